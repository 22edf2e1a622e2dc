/**
 * What a flow asks of the holder. The CLI answers at the terminal; the
 * local API answers through the portal and the agent's own PIN page. The
 * PIN is asked only through `pin()`, which the local API serves from the
 * agent's own origin, never from the portal's page.
 */
export interface Prompter {
  /** The token's user PIN (or, with `so: true`, the SO PIN). `triesLeft` when the module told. */
  pin(request: { tokenSerial: string; tokenLabel: string; reason: string; so?: boolean; newPin?: boolean; retry?: { code: string; triesLeft?: number } }): Promise<string>;
  /** The ID number of the holder (the type is the record's, e.g. resident-id). */
  idNumber(request: { idType: string; retry?: { code: string; triesLeft?: number } }): Promise<string>;
  /** The one-time code sent to `maskedTo`; may answer "resend" after `resendAfter`. */
  oneTimeCode(request: { channel: "sms" | "email"; maskedTo: string; expiresAt: Date; resendAfter: Date; retry?: { code: string } }): Promise<string | "resend">;
  /** Shows the second-device approval link (as a QR code where possible) and resolves when the holder says it is done. */
  stepUp(request: { approvalUrl: string; expiresAt?: Date }): Promise<void>;
  /** Asks to go on with something that loses data; false stops with nothing changed. */
  confirm(request: { question: string; consequences: string[] }): Promise<boolean>;
  /** Progress of a long step: visible to the holder, never asks anything. */
  progress(event: ProgressEvent): void;
}

export interface ProgressEvent {
  step:
    | "read-token" | "start-order" | "prove-possession" | "verify-identity" | "verify-code" | "step-up"
    | "generate-key" | "submit-csr" | "install" | "confirm" | "clean-up" | "done" | "resume" | "check-codes"
    /** The key waits for its own button (SKF keys with a confirm key): "请在 UKey 上按确认键". */
    | "press-button";
  /** Short text in zh-CN and en. */
  zh: string;
  en: string;
}
