import { AsnProp, AsnPropTypes } from "@peculiar/asn1-schema";
import { CertID, Signature, Version } from "@peculiar/asn1-ocsp";
import { Extension, GeneralName } from "@peculiar/asn1-x509";

// The OCSPRequest of RFC 6960 4.1.1. @peculiar/asn1-ocsp 2.6.1 declares a
// Request's singleRequestExtensions without its [0] EXPLICIT tag, so it
// refuses every request that carries one, such as NSS's (Firefox, ocspclnt),
// which names the issuer in a Service Locator extension (RFC 6960 4.4.6) of
// each Request. These classes are the library's with that tag put right.
// The schema is declared by calling AsnProp on the prototypes, as the
// library's compiled code does, not with decorator syntax: the CLI also runs
// under tsx outside this repository's tsconfig, where decorators compile to
// the standard form that asn1-schema does not understand.

/** Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL } */
export class OcspSingleRequest {
  reqCert = new CertID();
  singleRequestExtensions?: Extension[];
}
AsnProp({ type: CertID })(OcspSingleRequest.prototype, "reqCert");
AsnProp({ type: Extension, context: 0, optional: true, repeated: "sequence" })(OcspSingleRequest.prototype, "singleRequestExtensions");

/** TBSRequest ::= SEQUENCE { version [0] EXPLICIT Version DEFAULT v1, requestorName [1] EXPLICIT GeneralName OPTIONAL, requestList SEQUENCE OF Request, requestExtensions [2] EXPLICIT Extensions OPTIONAL } */
export class OcspTbsRequest {
  version: Version = Version.v1;
  requestorName?: GeneralName;
  requestList: OcspSingleRequest[] = [];
  requestExtensions?: Extension[];
}
AsnProp({ type: AsnPropTypes.Integer, context: 0, defaultValue: Version.v1 })(OcspTbsRequest.prototype, "version");
AsnProp({ type: GeneralName, context: 1, optional: true })(OcspTbsRequest.prototype, "requestorName");
AsnProp({ type: OcspSingleRequest, repeated: "sequence" })(OcspTbsRequest.prototype, "requestList");
AsnProp({ type: Extension, context: 2, optional: true, repeated: "sequence" })(OcspTbsRequest.prototype, "requestExtensions");

/** OCSPRequest ::= SEQUENCE { tbsRequest TBSRequest, optionalSignature [0] EXPLICIT Signature OPTIONAL } */
export class OcspRequestSchema {
  tbsRequest = new OcspTbsRequest();
  optionalSignature?: Signature;
}
AsnProp({ type: OcspTbsRequest })(OcspRequestSchema.prototype, "tbsRequest");
AsnProp({ type: Signature, optional: true, context: 0 })(OcspRequestSchema.prototype, "optionalSignature");
