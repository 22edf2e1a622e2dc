/**
 * What a flow asks of the holder. The CLI answers at the terminal; the
 * local API answers through the portal and the agent's own PIN page. The
 * PIN is asked only through `pin()`, which the local API serves from the
 * agent's own origin, never from the portal's page.
 */
export interface Prompter {
  /**
   * The token's user PIN (or, with `so: true`, the SO PIN). `triesLeft` when the module told.
   * With `keyPad: true` the key has its own PIN pad: the prompter asks for
   * nothing typed, tells the holder the PIN goes on the key, resolves ""
   * when the holder is ready, and never shows a PIN field.
   */
  pin(request: { tokenSerial: string; tokenLabel: string; reason: string; so?: boolean; newPin?: boolean; keyPad?: boolean; retry?: { code: string; triesLeft?: number } }): Promise<string>;
  /** The ID number of the holder (the type is the record's, e.g. resident-id). */
  idNumber(request: { idType: string; retry?: { code: string; triesLeft?: number } }): Promise<string>;
  /** The one-time code sent to `maskedTo`; may answer "resend" after `resendAfter`. */
  oneTimeCode(request: { channel: "sms" | "email"; maskedTo: string; expiresAt: Date; resendAfter: Date; retry?: { code: string } }): Promise<string | "resend">;
  /** Shows the second-device approval link (as a QR code where possible) and resolves when the holder says it is done. */
  stepUp(request: { approvalUrl: string; expiresAt?: Date }): Promise<void>;
  /**
   * Asks to go on with something that loses data, or (with `preview`) to
   * check the certificate a renewal or download is about to write; false
   * stops with nothing changed. A prompter that shows `preview` shows it in
   * its own language; `question` is the same in words, for one that cannot.
   */
  confirm(request: { question: string; consequences: string[]; preview?: CertificatePreview }): Promise<boolean>;
  /** Progress of a long step: visible to the holder, never asks anything. */
  progress(event: ProgressEvent): void;
}

export interface ProgressEvent {
  step:
    | "read-token" | "start-order" | "prove-possession" | "verify-identity" | "verify-code" | "step-up"
    | "generate-key" | "submit-csr" | "install" | "confirm" | "clean-up" | "done" | "resume" | "check-codes"
    /** The key waits for its own button (SKF keys with a confirm key): "请在 UKey 上按确认键". */
    | "press-button"
    /** The PIN is being typed on the key's own PIN pad (PKCS#11 CKF_PROTECTED_AUTHENTICATION_PATH). */
    | "key-pad";
  /** Short text in zh-CN and en. */
  zh: string;
  en: string;
  /** "press-button": how long the key waits before it cancels, where the vendor table tells it. */
  timeoutSeconds?: number;
}

/**
 * What the holder checks before a renewal or a download writes the key
 * (seed 004 §3.5 and §4.5: serial, subject and validity, then 确认): the
 * certificate on the key now (a renewal) and the one that will be written.
 * Subjects are DNs as the certificate and the RA's record give them; each
 * prompter shows them as readable fields (subjectFields of @ukey/policy).
 */
export interface CertificatePreview {
  kind: "renew" | "download";
  /** The certificate being renewed (renewals only). */
  current?: { serialHex: string; subject: string; notBefore: string; notAfter: string; algorithm?: string };
  /** The certificate that will be written: validity as the profile gives it today, the key algorithm, and whether an encryption certificate comes with it. */
  next: { subject: string; notBefore: string; notAfter: string; algorithm?: string; pair: boolean; profile?: { zh: string; en: string } };
}
