/**
 * A certificate subject as a holder reads it (seed 004 shows "证书主题：您/您的单位信息"):
 * the name, the organisation and the identifier the RA put in the
 * certificate, instead of a raw distinguished name. Pure; shared by the
 * agent's CLI, the portal and the console.
 */
export interface SubjectFields {
  /** CN: the holder's name (姓名). */
  name?: string;
  /** O (and OU after it): the institution or the holder's organisation (单位). */
  organisation?: string;
  /** serialNumber: the identifier the RA's record gives the holder (证件/编号). */
  id?: string;
  /** C. */
  country?: string;
  /** E-mail, when the subject carries one. */
  email?: string;
}

const attrNames: Record<string, keyof SubjectFields | "ou"> = {
  CN: "name", O: "organisation", OU: "ou", SERIALNUMBER: "id", "2.5.4.5": "id", C: "country", E: "email", EMAILADDRESS: "email", "1.2.840.113549.1.9.1": "email",
};

/**
 * The fields of a subject written as "CN=张三, O=示例银行, serialNumber=H1, C=CN"
 * (RFC 4514 order or the reverse; "/CN=…/O=…" as OpenSSL prints it; escaped
 * commas kept). Unknown attributes are left out. Throws nothing: a string
 * that is not a DN gives no fields.
 */
export function subjectFields(dn: string): SubjectFields {
  const out: SubjectFields = {};
  const ous: string[] = [];
  const parts = dn.match(/(?:\\.|[^,/+])+/g) ?? [];
  for (const part of parts) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const key = attrNames[part.slice(0, eq).trim().toUpperCase()];
    const value = part.slice(eq + 1).replace(/\\(.)/g, "$1").trim();
    if (!key || !value) continue;
    if (key === "ou") ous.push(value);
    else if (out[key] === undefined) out[key] = value;
  }
  if (ous.length) out.organisation = [out.organisation, ...ous].filter(Boolean).join(" ");
  return out;
}

/**
 * A serial number short enough to read out on the phone: the last eight
 * hex digits, upper case, in two groups ("…" is not used: it is the tail,
 * as a bank card's 尾号). Shorter serials are given whole. Throws nothing.
 */
export function shortSerial(serialHex: string): string {
  const hex = serialHex.replace(/[^0-9a-fA-F]/g, "").replace(/^0+(?=.)/, "").toUpperCase();
  const tail = hex.length > 8 ? hex.slice(-8) : hex;
  return tail.length > 4 ? `${tail.slice(0, tail.length - 4)} ${tail.slice(-4)}` : tail;
}

const algorithmLabels: Record<string, string> = {
  p256: "ECDSA P-256", p384: "ECDSA P-384", rsa2048: "RSA 2048", rsa3072: "RSA 3072", rsa4096: "RSA 4096", sm2: "SM2",
};

/** A key algorithm's name as certificate viewers show it ("p256" → "ECDSA P-256", "sm2" → "SM2"); unknown names as given. Throws nothing. */
export function keyAlgorithmLabel(algorithm: string): string {
  return algorithmLabels[algorithm] ?? algorithm;
}
