import { AsnProp, AsnPropTypes } from "@peculiar/asn1-schema";
import { CertID, Signature, Version } from "@peculiar/asn1-ocsp";
import { Extension, GeneralName } from "@peculiar/asn1-x509";

// The OCSPRequest of RFC 6960 4.1.1. @peculiar/asn1-ocsp 2.6.1 declares a
// Request's singleRequestExtensions without its [0] EXPLICIT tag, so it
// refuses every request that carries one, such as NSS's (Firefox, ocspclnt),
// which names the issuer in a Service Locator extension (RFC 6960 4.4.6) of
// each Request. These classes are the library's with that tag put right.

/** Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL } */
export class OcspSingleRequest {
  @AsnProp({ type: CertID })
  reqCert = new CertID();

  @AsnProp({ type: Extension, context: 0, optional: true, repeated: "sequence" })
  singleRequestExtensions?: Extension[];
}

/** TBSRequest ::= SEQUENCE { version [0] EXPLICIT Version DEFAULT v1, requestorName [1] EXPLICIT GeneralName OPTIONAL, requestList SEQUENCE OF Request, requestExtensions [2] EXPLICIT Extensions OPTIONAL } */
export class OcspTbsRequest {
  @AsnProp({ type: AsnPropTypes.Integer, context: 0, defaultValue: Version.v1 })
  version: Version = Version.v1;

  @AsnProp({ type: GeneralName, context: 1, optional: true })
  requestorName?: GeneralName;

  @AsnProp({ type: OcspSingleRequest, repeated: "sequence" })
  requestList: OcspSingleRequest[] = [];

  @AsnProp({ type: Extension, context: 2, optional: true, repeated: "sequence" })
  requestExtensions?: Extension[];
}

/** OCSPRequest ::= SEQUENCE { tbsRequest TBSRequest, optionalSignature [0] EXPLICIT Signature OPTIONAL } */
export class OcspRequestSchema {
  @AsnProp({ type: OcspTbsRequest })
  tbsRequest = new OcspTbsRequest();

  @AsnProp({ type: Signature, optional: true, context: 0 })
  optionalSignature?: Signature;
}
