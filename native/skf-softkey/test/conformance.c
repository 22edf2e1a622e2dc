/*
 * skf-softkey-conformance: checks the software SKF key against GM/T 0016-2012
 * through its public API only, with OpenSSL (not the library's own code) for
 * SM3, SM4 and the independent checks. Driven by
 * packages/agent/test/skf/softkey-conformance.test.ts. Output is TAP-like:
 * "ok N - ..." / "not ok N - ..."; exit status 1 when a check fails.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "skf.h"

static int count, failures;

static void check(int ok, const char *fmt, ...) {
  va_list ap;
  count++;
  if (!ok) failures++;
  printf("%s %d - ", ok ? "ok" : "not ok", count);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

#define EXPECT(call, want, desc)                                                                          \
  do {                                                                                                    \
    ULONG got_ = (call);                                                                                  \
    check(got_ == (ULONG)(want), "%s: 0x%08X (want %s 0x%08X)", desc, got_, #want, (unsigned)(want)); \
  } while (0)

static int finish(void) {
  printf("1..%d\n# %d checks, %d failed\n", count, count, failures);
  return failures ? 1 : 0;
}

/* ---- SM2 helpers on OpenSSL alone ---- */

static const char *SM2_ID = "1234567812345678";

/* e = SM3(Z || M), Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GB/T 32918.2). */
static int sm2_e(const unsigned char pub[65], const unsigned char *msg, size_t len, unsigned char e[32]) {
  EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_sm2);
  BIGNUM *p = BN_new(), *a = BN_new(), *b = BN_new(), *x = BN_new(), *y = BN_new();
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned char buf[32], z[32], entl[2];
  size_t idlen = strlen(SM2_ID);
  unsigned int n;
  int rc = -1;
  if (!g || !md || !EC_GROUP_get_curve(g, p, a, b, NULL) ||
      !EC_POINT_get_affine_coordinates(g, EC_GROUP_get0_generator(g), x, y, NULL))
    goto done;
  entl[0] = (unsigned char)((idlen * 8) >> 8);
  entl[1] = (unsigned char)(idlen * 8);
  if (!EVP_DigestInit_ex(md, EVP_sm3(), NULL) || !EVP_DigestUpdate(md, entl, 2) || !EVP_DigestUpdate(md, SM2_ID, idlen))
    goto done;
  BIGNUM *parts[4] = {a, b, x, y};
  for (int i = 0; i < 4; i++)
    if (BN_bn2binpad(parts[i], buf, 32) != 32 || !EVP_DigestUpdate(md, buf, 32)) goto done;
  if (!EVP_DigestUpdate(md, pub + 1, 64) || !EVP_DigestFinal_ex(md, z, &n)) goto done;
  if (!EVP_DigestInit_ex(md, EVP_sm3(), NULL) || !EVP_DigestUpdate(md, z, 32) || !EVP_DigestUpdate(md, msg, len) ||
      !EVP_DigestFinal_ex(md, e, &n))
    goto done;
  rc = 0;
done:
  EVP_MD_CTX_free(md);
  BN_free(p), BN_free(a), BN_free(b), BN_free(x), BN_free(y);
  EC_GROUP_free(g);
  return rc;
}

static void pub_of(const ECCPUBLICKEYBLOB *blob, unsigned char pub[65]) {
  pub[0] = 4;
  memcpy(pub + 1, blob->XCoordinate + 32, 32);
  memcpy(pub + 33, blob->YCoordinate + 32, 32);
}

static EVP_PKEY *sm2_public(const unsigned char pub[65]) {
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM *params;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "SM2", NULL);
  EVP_PKEY *pkey = NULL;
  OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "SM2", 0);
  OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 65);
  params = OSSL_PARAM_BLD_to_param(bld);
  if (EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) pkey = NULL;
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  EVP_PKEY_CTX_free(ctx);
  return pkey;
}

/* DER ECDSA-Sig-Value of an ECCSIGNATUREBLOB; length or -1. */
static int sig_der(const ECCSIGNATUREBLOB *sig, unsigned char **der) {
  ECDSA_SIG *s = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(sig->r + 32, 32, NULL), *ss = BN_bin2bn(sig->s + 32, 32, NULL);
  int n;
  ECDSA_SIG_set0(s, r, ss);
  *der = NULL;
  n = i2d_ECDSA_SIG(s, der);
  ECDSA_SIG_free(s);
  return n;
}

/* OpenSSL's own SM2 verification of (Z||M) with the standard ID: 1 valid, 0 not. */
static int openssl_verifies(const unsigned char pub[65], const unsigned char *msg, size_t len,
                            const ECCSIGNATUREBLOB *sig) {
  EVP_PKEY *pkey = sm2_public(pub);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pctx = NULL;
  unsigned char *der = NULL;
  int n = sig_der(sig, &der), ok = 0;
  if (pkey && md && n > 0 && EVP_DigestVerifyInit(md, &pctx, EVP_sm3(), NULL, pkey) == 1 &&
      EVP_PKEY_CTX_set1_id(pctx, SM2_ID, strlen(SM2_ID)) > 0)
    ok = EVP_DigestVerify(md, der, (size_t)n, msg, len) == 1;
  OPENSSL_free(der);
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(pkey);
  return ok;
}

static void hex(const char *label, const unsigned char *p, size_t n) {
  printf("%s ", label);
  for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
  putchar('\n');
}

static unsigned char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  unsigned char *buf = NULL;
  long n;
  if (!f) return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
      free(buf);
      buf = NULL;
    }
    *len = (size_t)n;
  }
  fclose(f);
  return buf;
}

/* Connects, opens the application and logs in; prints what failed. */
static ULONG login(const char *dev, const char *app, const char *pin, DEVHANDLE *hd, HAPPLICATION *ha) {
  ULONG r, retry = 0;
  if ((r = SKF_ConnectDev((LPSTR)dev, hd)) != SAR_OK) return r;
  if ((r = SKF_OpenApplication(*hd, (LPSTR)app, ha)) != SAR_OK) return r;
  return SKF_VerifyPIN(*ha, USER_TYPE, (LPSTR)pin, &retry);
}

/* ---- sign: for the OpenSSL CLI check ---- */

static int cmd_sign(char **a) {
  DEVHANDLE hd;
  HAPPLICATION ha;
  HCONTAINER hc;
  ECCPUBLICKEYBLOB blob;
  ECCSIGNATUREBLOB sig;
  ULONG r, type = 0, len = sizeof blob;
  unsigned char pub[65], e[32], *der = NULL;
  size_t mlen = 0;
  unsigned char *msg = read_file(a[4], &mlen);
  char path[4096];
  FILE *f;
  int n;
  if (!msg) return fprintf(stderr, "cannot read %s\n", a[4]), 2;
  if ((r = login(a[0], a[1], a[2], &hd, &ha)) != SAR_OK) return printf("SAR 0x%08X login\n", r), 3;
  if (SKF_OpenContainer(ha, a[3], &hc) != SAR_OK && (r = SKF_CreateContainer(ha, a[3], &hc)) != SAR_OK)
    return printf("SAR 0x%08X create\n", r), 3;
  if ((r = SKF_GetContainerType(hc, &type)) != SAR_OK) return printf("SAR 0x%08X type\n", r), 3;
  if (type == CONTAINER_TYPE_EMPTY && (r = SKF_GenECCKeyPair(hc, SGD_SM2_1, &blob)) != SAR_OK)
    return printf("SAR 0x%08X gen\n", r), 3;
  if ((r = SKF_ExportPublicKey(hc, TRUE, (BYTE *)&blob, &len)) != SAR_OK) return printf("SAR 0x%08X export\n", r), 3;
  pub_of(&blob, pub);
  if (sm2_e(pub, msg, mlen, e) != 0) return 2;
  r = SKF_ECCSignData(hc, e, 32, &sig);
  printf("SAR 0x%08X sign\n", r);
  if (r != SAR_OK) return 3;
  hex("pub", pub, 65);
  snprintf(path, sizeof path, "%s/pub.pem", a[5]);
  f = fopen(path, "w");
  EVP_PKEY *pkey = sm2_public(pub);
  if (!f || !pkey || !PEM_write_PUBKEY(f, pkey)) return 2;
  fclose(f);
  EVP_PKEY_free(pkey);
  n = sig_der(&sig, &der);
  snprintf(path, sizeof path, "%s/sig.der", a[5]);
  f = fopen(path, "wb");
  if (!f || n <= 0 || fwrite(der, 1, (size_t)n, f) != (size_t)n) return 2;
  fclose(f);
  OPENSSL_free(der);
  free(msg);
  SKF_DisConnectDev(hd);
  return 0;
}

/* ---- device events: plug and unplug ---- */

static int cmd_wait_event(char **a) {
  int n = atoi(a[0]);
  puts("# waiting");
  fflush(stdout);
  for (int i = 0; i < n; i++) {
    char name[128];
    ULONG len = sizeof name, ev = 0, r = SKF_WaitForDevEvent(name, &len, &ev);
    printf("SAR 0x%08X event\n", r);
    if (r != SAR_OK) return 3;
    printf("event %u %s\n", ev, name);
    fflush(stdout);
  }
  return 0;
}

static void *waiter(void *arg) {
  char name[128];
  ULONG len = sizeof name, ev = 0;
  *(ULONG *)arg = SKF_WaitForDevEvent(name, &len, &ev);
  return NULL;
}

static int cmd_cancel_wait(char **a) {
  pthread_t t;
  ULONG r = SAR_OK;
  (void)a;
  pthread_create(&t, NULL, waiter, &r);
  struct timespec ts = {0, 200000000L};
  nanosleep(&ts, NULL);
  SKF_CancelWaitForDevEvent();
  pthread_join(t, NULL);
  printf("SAR 0x%08X wait\n", r);
  return r == SAR_OK ? 0 : 3;
}

static int cmd_checks(char **a);
static int cmd_storage(char **a);
static int cmd_import(char **a);
static int cmd_decrypt(char **a);

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    int args;
    int (*fn)(char **);
    const char *usage;
  } cmds[] = {
      {"checks", 5, cmd_checks, "DEV APP USER-PIN ADMIN-PIN DEV-AUTH-KEY-HEX"},
      {"storage-full", 3, cmd_storage, "DEV APP USER-PIN"},
      {"sign", 6, cmd_sign, "DEV APP USER-PIN CONTAINER MESSAGE-FILE OUT-DIR"},
      {"import", 5, cmd_import, "DEV APP USER-PIN CONTAINER BLOB-FILE"},
      {"decrypt", 5, cmd_decrypt, "DEV APP USER-PIN CONTAINER SM2CIPHER-DER-FILE"},
      {"wait-event", 1, cmd_wait_event, "COUNT"},
      {"cancel-wait", 0, cmd_cancel_wait, ""},
  };
  puts("# skf-softkey: a software stand-in for a vendor's SKF library, not a vendor library");
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (argc > 1 && strcmp(argv[1], cmds[i].name) == 0) {
      if (argc != cmds[i].args + 2) return fprintf(stderr, "usage: %s %s %s\n", argv[0], cmds[i].name, cmds[i].usage), 2;
      return cmds[i].fn(argv + 2);
    }
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) fprintf(stderr, "usage: %s %s %s\n", argv[0], cmds[i].name, cmds[i].usage);
  return 2;
}

/* ---- import / decrypt: the enveloped encryption key ---- */

static int cmd_import(char **a) {
  DEVHANDLE hd;
  HAPPLICATION ha;
  HCONTAINER hc;
  ECCPUBLICKEYBLOB blob;
  ULONG r, len = sizeof blob;
  size_t n = 0;
  unsigned char *env = read_file(a[4], &n), pub[65];
  if (!env) return fprintf(stderr, "cannot read %s\n", a[4]), 2;
  if ((r = login(a[0], a[1], a[2], &hd, &ha)) != SAR_OK) return printf("SAR 0x%08X login\n", r), 3;
  if ((r = SKF_OpenContainer(ha, a[3], &hc)) != SAR_OK) return printf("SAR 0x%08X open\n", r), 3;
  r = SKF_ImportECCKeyPair(hc, (ENVELOPEDKEYBLOB *)env);
  printf("SAR 0x%08X import\n", r);
  if (r != SAR_OK) return 3;
  if ((r = SKF_ExportPublicKey(hc, FALSE, (BYTE *)&blob, &len)) != SAR_OK) return printf("SAR 0x%08X export\n", r), 3;
  pub_of(&blob, pub);
  hex("encpub", pub, 65);
  free(env);
  SKF_DisConnectDev(hd);
  return 0;
}

/* Reads GM/T 0009 SM2Cipher DER (what `openssl pkeyutl -encrypt` writes) into an ECCCIPHERBLOB. */
static ECCCIPHERBLOB *cipher_blob(const unsigned char *der, size_t len) {
  const unsigned char *p = der;
  ASN1_SEQUENCE_ANY *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, (long)len);
  ECCCIPHERBLOB *cb = NULL;
  if (!seq || sk_ASN1_TYPE_num(seq) != 4) goto done;
  ASN1_TYPE *x = sk_ASN1_TYPE_value(seq, 0), *y = sk_ASN1_TYPE_value(seq, 1), *h = sk_ASN1_TYPE_value(seq, 2),
            *c = sk_ASN1_TYPE_value(seq, 3);
  if (x->type != V_ASN1_INTEGER || y->type != V_ASN1_INTEGER || h->type != V_ASN1_OCTET_STRING ||
      c->type != V_ASN1_OCTET_STRING || ASN1_STRING_length(h->value.octet_string) != 32)
    goto done;
  int clen = ASN1_STRING_length(c->value.octet_string);
  cb = calloc(1, sizeof *cb + (size_t)clen);
  BIGNUM *bx = ASN1_INTEGER_to_BN(x->value.integer, NULL), *by = ASN1_INTEGER_to_BN(y->value.integer, NULL);
  BN_bn2binpad(bx, cb->XCoordinate + 32, 32);
  BN_bn2binpad(by, cb->YCoordinate + 32, 32);
  BN_free(bx);
  BN_free(by);
  memcpy(cb->HASH, ASN1_STRING_get0_data(h->value.octet_string), 32);
  cb->CipherLen = (ULONG)clen;
  memcpy(cb->Cipher, ASN1_STRING_get0_data(c->value.octet_string), (size_t)clen);
done:
  sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
  return cb;
}

static int cmd_decrypt(char **a) {
  DEVHANDLE hd;
  HAPPLICATION ha;
  HCONTAINER hc;
  ULONG r, len;
  size_t n = 0;
  unsigned char *der = read_file(a[4], &n), out[1024];
  ECCCIPHERBLOB *cb = der ? cipher_blob(der, n) : NULL;
  if (!cb) return fprintf(stderr, "cannot read an SM2Cipher from %s\n", a[4]), 2;
  if ((r = login(a[0], a[1], a[2], &hd, &ha)) != SAR_OK) return printf("SAR 0x%08X login\n", r), 3;
  if ((r = SKF_OpenContainer(ha, a[3], &hc)) != SAR_OK) return printf("SAR 0x%08X open\n", r), 3;
  len = sizeof out;
  r = SKF_ECCDecrypt(hc, cb, out, &len);
  printf("SAR 0x%08X decrypt\n", r);
  if (r != SAR_OK) return 3;
  hex("plain", out, len);
  free(cb);
  free(der);
  SKF_DisConnectDev(hd);
  return 0;
}

/* ---- storage-full: a full key refuses and keeps what it had ---- */

static int cmd_storage(char **a) {
  DEVHANDLE hd;
  HAPPLICATION ha;
  HCONTAINER h1, h2;
  DEVINFO before, after;
  ULONG r, len = 0;
  static BYTE cert[4000];
  memset(cert, 0x30, sizeof cert);
  if ((r = login(a[0], a[1], a[2], &hd, &ha)) != SAR_OK) return printf("SAR 0x%08X login\n", r), 3;
  EXPECT(SKF_CreateContainer(ha, "full-1", &h1), SAR_OK, "create a first container");
  EXPECT(SKF_ImportCertificate(h1, TRUE, cert, sizeof cert), SAR_OK, "a 4000-octet certificate fits");
  EXPECT(SKF_CreateContainer(ha, "full-2", &h2), SAR_OK, "create a second container");
  EXPECT(SKF_GetDevInfo(hd, &before), SAR_OK, "device info before");
  check(before.FreeSpace < sizeof cert, "FreeSpace %u is less than a second certificate", before.FreeSpace);
  EXPECT(SKF_ImportCertificate(h2, TRUE, cert, sizeof cert), SAR_NO_ROOM, "a second certificate: no room");
  EXPECT(SKF_GetDevInfo(hd, &after), SAR_OK, "device info after");
  check(after.FreeSpace == before.FreeSpace, "the refused import took no space (%u, %u)", before.FreeSpace,
        after.FreeSpace);
  EXPECT(SKF_ExportCertificate(h2, TRUE, NULL, &len), SAR_CERTNOTFOUNTERR, "nothing half-stored");
  EXPECT(SKF_CloseContainer(h1), SAR_OK, "close the first container");
  EXPECT(SKF_DeleteContainer(ha, "full-1"), SAR_OK, "delete the first container");
  EXPECT(SKF_ImportCertificate(h2, TRUE, cert, sizeof cert), SAR_OK, "after deleting, the certificate fits");
  SKF_DisConnectDev(hd);
  return finish();
}

/* ---- checks: PIN, containers, signature, handles, device authentication, RSA ---- */

static int has_name(const char *list, const char *name) {
  for (const char *p = list; *p; p += strlen(p) + 1)
    if (strcmp(p, name) == 0) return 1;
  return 0;
}

static int dev_auth(DEVHANDLE hd, const unsigned char key[16], int corrupt) {
  unsigned char rnd[16] = {0}, out[32];
  int n1 = 0, n2 = 0;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (SKF_GenRandom(hd, rnd, 8) != SAR_OK) return -1;
  memset(rnd + 8, 0, 8);
  EVP_EncryptInit_ex(ctx, EVP_sm4_ecb(), NULL, key, NULL);
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  EVP_EncryptUpdate(ctx, out, &n1, rnd, 16);
  EVP_EncryptFinal_ex(ctx, out + n1, &n2);
  EVP_CIPHER_CTX_free(ctx);
  if (corrupt) out[0] ^= 1;
  return (int)SKF_DevAuth(hd, out, 16);
}

static int cmd_checks(char **a) {
  const char *dev = a[0], *app = a[1], *pin = a[2], *admin = a[3];
  DEVHANDLE hd, hd2;
  HAPPLICATION ha, ha2;
  HCONTAINER hc, hr;
  DEVINFO info;
  ECCPUBLICKEYBLOB blob, blob2;
  ECCSIGNATUREBLOB sig;
  RSAPUBLICKEYBLOB rblob;
  ULONG r, len, retry, max, remain, type;
  BOOL dflt;
  char list[1024], longname[80];
  unsigned char pub[65], e[32], key[16], rnd1[32], rnd2[32];
  const char *msg = "ukey-renew conformance";
  BYTE cert[300], got[400];
  BYTE garbage[64] = {0};

  for (int i = 0; i < 16; i++) sscanf(a[4] + 2 * i, "%2hhx", &key[i]);

  /* 7.1 devices */
  EXPECT(SKF_EnumDev(TRUE, NULL, NULL), SAR_INVALIDPARAMERR, "EnumDev without a size");
  EXPECT(SKF_EnumDev(TRUE, NULL, &len), SAR_OK, "EnumDev asks for the size");
  r = 1;
  EXPECT(SKF_EnumDev(TRUE, list, &r), SAR_BUFFER_TOO_SMALL, "EnumDev into a 1-octet buffer");
  check(r == len, "and says the size it needs (%u)", r);
  len = sizeof list;
  EXPECT(SKF_EnumDev(TRUE, list, &len), SAR_OK, "EnumDev");
  check(has_name(list, dev), "lists %s", dev);
  EXPECT(SKF_ConnectDev("no-such-key", &hd), SAR_DEVICE_REMOVED, "ConnectDev to a key that is not there");
  EXPECT(SKF_ConnectDev((LPSTR)dev, NULL), SAR_INVALIDPARAMERR, "ConnectDev without a handle pointer");
  EXPECT(SKF_ConnectDev((LPSTR)dev, &hd), SAR_OK, "ConnectDev");
  EXPECT(SKF_GetDevInfo(hd, &info), SAR_OK, "GetDevInfo");
  check(info.Label[0] && info.SerialNumber[0], "label and serial number are set");
  check(info.TotalSpace > 0 && info.FreeSpace <= info.TotalSpace, "space %u free of %u", info.FreeSpace,
        info.TotalSpace);
  check((info.AlgAsymCap & SGD_SM2_1) == SGD_SM2_1 && (info.AlgHashCap & SGD_SM3), "SM2 and SM3 capabilities");
  check(sizeof(DEVINFO) == 294 && sizeof(ECCPUBLICKEYBLOB) == 132 && sizeof(ECCSIGNATUREBLOB) == 128 &&
            sizeof(ECCCIPHERBLOB) == 165 && sizeof(ENVELOPEDKEYBLOB) == 373 && sizeof(RSAPUBLICKEYBLOB) == 268,
        "structure sizes of the standard (packed)");

  /* 7.3 applications */
  len = sizeof list;
  EXPECT(SKF_EnumApplication(hd, list, &len), SAR_OK, "EnumApplication");
  check(has_name(list, app), "lists %s", app);
  EXPECT(SKF_OpenApplication(hd, "NO_SUCH_APP", &ha), SAR_APPLICATION_NOT_EXISTS, "OpenApplication of a missing one");
  EXPECT(SKF_OpenApplication(hd, (LPSTR)app, &ha), SAR_OK, "OpenApplication");

  /* 7.2 PIN */
  EXPECT(SKF_GetPINInfo(ha, USER_TYPE, &max, &remain, &dflt), SAR_OK, "GetPINInfo");
  check(max >= 3 && remain == max, "user PIN: %u of %u tries left", remain, max);
  EXPECT(SKF_VerifyPIN(ha, 7, (LPSTR)pin, &retry), SAR_USER_TYPE_INVALID, "VerifyPIN with an unknown PIN type");
  EXPECT(SKF_CreateContainer(ha, "c1", &hc), SAR_USER_NOT_LOGGED_IN, "CreateContainer before the PIN");
  EXPECT(SKF_VerifyPIN(ha, USER_TYPE, "000000", &retry), SAR_PIN_INCORRECT, "a wrong PIN");
  check(retry == max - 1, "retry count %u after one wrong PIN", retry);
  EXPECT(SKF_VerifyPIN(ha, USER_TYPE, "000001", &retry), SAR_PIN_INCORRECT, "a second wrong PIN");
  check(retry == max - 2, "retry count %u after two wrong PINs", retry);
  EXPECT(SKF_VerifyPIN(ha, USER_TYPE, (LPSTR)pin, &retry), SAR_OK, "the right PIN");
  EXPECT(SKF_GetPINInfo(ha, USER_TYPE, &max, &remain, &dflt), SAR_OK, "GetPINInfo again");
  check(remain == max, "the right PIN restores the count (%u)", remain);
  for (ULONG i = 0; i + 1 < max; i++) SKF_VerifyPIN(ha, USER_TYPE, "999999", &retry);
  EXPECT(SKF_VerifyPIN(ha, USER_TYPE, "999999", &retry), SAR_PIN_LOCKED, "the last wrong PIN locks");
  check(retry == 0, "retry count 0 when locked");
  EXPECT(SKF_VerifyPIN(ha, USER_TYPE, (LPSTR)pin, &retry), SAR_PIN_LOCKED, "a locked PIN refuses the right PIN");
  EXPECT(SKF_UnblockPIN(ha, "00000000", "65432100", &retry), SAR_PIN_INCORRECT, "UnblockPIN with a wrong admin PIN");
  EXPECT(SKF_GetPINInfo(ha, ADMIN_TYPE, &max, &remain, &dflt), SAR_OK, "GetPINInfo of the admin PIN");
  check(retry == remain && remain == max - 1, "the admin PIN's count went down (%u of %u)", remain, max);
  EXPECT(SKF_UnblockPIN(ha, (LPSTR)admin, "12", &retry), SAR_PIN_LEN_RANGE, "UnblockPIN to a 2-digit PIN");
  EXPECT(SKF_UnblockPIN(ha, (LPSTR)admin, "65432100", &retry), SAR_OK, "UnblockPIN with the admin PIN");
  EXPECT(SKF_VerifyPIN(ha, USER_TYPE, (LPSTR)pin, &retry), SAR_PIN_INCORRECT, "the old user PIN no longer opens");
  EXPECT(SKF_VerifyPIN(ha, USER_TYPE, "65432100", &retry), SAR_OK, "the new user PIN opens");
  EXPECT(SKF_ChangePIN(ha, USER_TYPE, "65432100", "123", &retry), SAR_PIN_LEN_RANGE, "ChangePIN to a short PIN");
  EXPECT(SKF_ChangePIN(ha, USER_TYPE, "11111111", (LPSTR)pin, &retry), SAR_PIN_INCORRECT, "ChangePIN with a wrong PIN");
  EXPECT(SKF_ChangePIN(ha, USER_TYPE, "65432100", (LPSTR)pin, &retry), SAR_OK, "ChangePIN back");
  EXPECT(SKF_GetPINInfo(ha, USER_TYPE, &max, &remain, &dflt), SAR_OK, "GetPINInfo after the change");
  check(!dflt && remain == max, "a changed PIN is not the default one");
  EXPECT(SKF_VerifyPIN(ha, USER_TYPE, (LPSTR)pin, &retry), SAR_OK, "VerifyPIN");

  /* 7.5 containers */
  memset(longname, 'x', sizeof longname);
  longname[MAX_CNTNAME_LEN + 1] = 0;
  EXPECT(SKF_CreateContainer(ha, longname, &hc), SAR_NAMELENERR, "a 65-octet container name");
  EXPECT(SKF_CreateContainer(ha, "c1", &hc), SAR_OK, "CreateContainer");
  EXPECT(SKF_CreateContainer(ha, "c1", &hr), SAR_FILE_ALREADY_EXIST, "CreateContainer twice");
  len = sizeof list;
  EXPECT(SKF_EnumContainer(ha, list, &len), SAR_OK, "EnumContainer");
  check(has_name(list, "c1"), "lists c1");
  EXPECT(SKF_GetContainerType(hc, &type), SAR_OK, "GetContainerType");
  check(type == CONTAINER_TYPE_EMPTY, "a new container is empty (%u)", type);
  EXPECT(SKF_ECCSignData(hc, e, 32, &sig), SAR_KEYNOTFOUNTERR, "ECCSignData in an empty container");
  EXPECT(SKF_GenECCKeyPair(hc, SGD_RSA, &blob), SAR_NOTSUPPORTYETERR, "GenECCKeyPair with an RSA algorithm");
  EXPECT(SKF_GenECCKeyPair(hc, SGD_SM2_1, &blob), SAR_OK, "GenECCKeyPair");
  check(blob.BitLen == 256, "BitLen 256");
  EXPECT(SKF_GetContainerType(hc, &type), SAR_OK, "GetContainerType");
  check(type == CONTAINER_TYPE_ECC, "an SM2 container (%u)", type);
  EXPECT(SKF_ExportPublicKey(hc, TRUE, NULL, &len), SAR_OK, "ExportPublicKey asks for the size");
  check(len == sizeof(ECCPUBLICKEYBLOB), "an ECCPUBLICKEYBLOB (%u octets)", len);
  EXPECT(SKF_ExportPublicKey(hc, TRUE, (BYTE *)&blob2, &len), SAR_OK, "ExportPublicKey");
  check(memcmp(&blob, &blob2, sizeof blob) == 0, "the exported key is the generated one");
  len = sizeof blob2;
  EXPECT(SKF_ExportPublicKey(hc, FALSE, (BYTE *)&blob2, &len), SAR_KEYNOTFOUNTERR, "no encryption key yet");
  pub_of(&blob, pub);
  check(sm2_e(pub, (const unsigned char *)msg, strlen(msg), e) == 0, "e = SM3(Z || M) with the standard ID");
  EXPECT(SKF_ECCSignData(hc, e, 31, &sig), SAR_INDATALENERR, "ECCSignData over 31 octets");
  EXPECT(SKF_ECCSignData(hc, e, 32, NULL), SAR_INVALIDPARAMERR, "ECCSignData without a signature buffer");
  EXPECT(SKF_ECCSignData(hc, e, 32, &sig), SAR_OK, "ECCSignData");
  check(openssl_verifies(pub, (const unsigned char *)msg, strlen(msg), &sig), "OpenSSL verifies it (SM3, ID %s)", SM2_ID);
  EXPECT(SKF_ExtECCVerify(hd, &blob, e, 32, &sig), SAR_OK, "ExtECCVerify");
  e[0] ^= 1;
  check(SKF_ExtECCVerify(hd, &blob, e, 32, &sig) != SAR_OK, "ExtECCVerify refuses another digest");
  check(!openssl_verifies(pub, (const unsigned char *)"other", 5, &sig), "OpenSSL refuses it for another message");
  e[0] ^= 1;
  for (size_t i = 0; i < sizeof cert; i++) cert[i] = (BYTE)i;
  EXPECT(SKF_ImportCertificate(hc, TRUE, cert, sizeof cert), SAR_OK, "ImportCertificate (signing)");
  EXPECT(SKF_ImportCertificate(hc, FALSE, cert, 0), SAR_INVALIDPARAMERR, "ImportCertificate of nothing");
  len = 10;
  EXPECT(SKF_ExportCertificate(hc, TRUE, got, &len), SAR_BUFFER_TOO_SMALL, "ExportCertificate into 10 octets");
  check(len == sizeof cert, "says the size it needs (%u)", len);
  len = sizeof got;
  EXPECT(SKF_ExportCertificate(hc, TRUE, got, &len), SAR_OK, "ExportCertificate");
  check(len == sizeof cert && memcmp(got, cert, len) == 0, "the same octets");
  EXPECT(SKF_ExportCertificate(hc, FALSE, got, &len), SAR_CERTNOTFOUNTERR, "no encryption certificate");

  /* state persists across connections */
  EXPECT(SKF_ConnectDev((LPSTR)dev, &hd2), SAR_OK, "a second connection");
  EXPECT(SKF_OpenApplication(hd2, (LPSTR)app, &ha2), SAR_OK, "opens the application");
  EXPECT(SKF_OpenContainer(ha2, "c1", &hr), SAR_OK, "opens c1");
  len = sizeof blob2;
  EXPECT(SKF_ExportPublicKey(hr, TRUE, (BYTE *)&blob2, &len), SAR_OK, "reads the key");
  check(memcmp(&blob, &blob2, sizeof blob) == 0, "the same key");
  EXPECT(SKF_ECCSignData(hr, e, 32, &sig), SAR_USER_NOT_LOGGED_IN, "signing needs this application's PIN");
  EXPECT(SKF_DisConnectDev(hd2), SAR_OK, "DisConnectDev");
  EXPECT(SKF_ExportPublicKey(hr, TRUE, (BYTE *)&blob2, &len), SAR_INVALIDHANDLEERR, "its container handle is closed");
  EXPECT(SKF_CloseApplication(ha2), SAR_INVALIDHANDLEERR, "its application handle is closed");

  /* handles and arguments */
  EXPECT(SKF_GetDevInfo(NULL, &info), SAR_INVALIDHANDLEERR, "GetDevInfo(NULL)");
  EXPECT(SKF_GetDevInfo((DEVHANDLE)garbage, &info), SAR_INVALIDHANDLEERR, "GetDevInfo(a pointer it never made)");
  EXPECT(SKF_GetDevInfo(ha, &info), SAR_INVALIDHANDLEERR, "GetDevInfo(an application handle)");
  EXPECT(SKF_GetDevInfo(hd, NULL), SAR_INVALIDPARAMERR, "GetDevInfo without a DEVINFO");
  EXPECT(SKF_ECCSignData(ha, e, 32, &sig), SAR_INVALIDHANDLEERR, "ECCSignData(an application handle)");
  EXPECT(SKF_VerifyPIN(hc, USER_TYPE, (LPSTR)pin, &retry), SAR_INVALIDHANDLEERR, "VerifyPIN(a container handle)");
  EXPECT(SKF_VerifyPIN(ha, USER_TYPE, NULL, &retry), SAR_INVALIDPARAMERR, "VerifyPIN(NULL PIN)");
  EXPECT(SKF_OpenContainer(ha, NULL, &hr), SAR_INVALIDPARAMERR, "OpenContainer(NULL name)");
  EXPECT(SKF_EnumContainer(ha, list, NULL), SAR_INVALIDPARAMERR, "EnumContainer without a size");
  EXPECT(SKF_ExportPublicKey(hc, TRUE, NULL, NULL), SAR_INVALIDPARAMERR, "ExportPublicKey without a size");
  EXPECT(SKF_ImportECCKeyPair(hc, NULL), SAR_INVALIDPARAMERR, "ImportECCKeyPair(NULL)");
  EXPECT(SKF_ExtECCVerify(hd, NULL, e, 32, &sig), SAR_INVALIDPARAMERR, "ExtECCVerify without a key");
  EXPECT(SKF_CloseContainer(NULL), SAR_INVALIDHANDLEERR, "CloseContainer(NULL)");

  /* ClearSecureState logs out */
  EXPECT(SKF_ClearSecureState(ha), SAR_OK, "ClearSecureState");
  EXPECT(SKF_ECCSignData(hc, e, 32, &sig), SAR_USER_NOT_LOGGED_IN, "then ECCSignData needs the PIN");
  EXPECT(SKF_VerifyPIN(ha, USER_TYPE, (LPSTR)pin, &retry), SAR_OK, "VerifyPIN");

  /* container deletion */
  EXPECT(SKF_CloseContainer(hc), SAR_OK, "CloseContainer");
  EXPECT(SKF_CloseContainer(hc), SAR_INVALIDHANDLEERR, "CloseContainer twice");
  EXPECT(SKF_DeleteContainer(ha, "c1"), SAR_OK, "DeleteContainer");
  EXPECT(SKF_DeleteContainer(ha, "c1"), SAR_FILE_NOT_EXIST, "DeleteContainer twice");
  EXPECT(SKF_OpenContainer(ha, "c1", &hc), SAR_FILE_NOT_EXIST, "OpenContainer of a deleted one");

  /* RSA */
  EXPECT(SKF_CreateContainer(ha, "rsa", &hr), SAR_OK, "CreateContainer for RSA");
  EXPECT(SKF_GenRSAKeyPair(hr, 1000, &rblob), SAR_MODULUSLENERR, "GenRSAKeyPair of 1000 bits");
  EXPECT(SKF_GenRSAKeyPair(hr, 2048, &rblob), SAR_OK, "GenRSAKeyPair of 2048 bits");
  check(rblob.AlgID == SGD_RSA && rblob.BitLen == 2048, "an RSA 2048 blob");
  EXPECT(SKF_GetContainerType(hr, &type), SAR_OK, "GetContainerType");
  check(type == CONTAINER_TYPE_RSA, "an RSA container (%u)", type);
  EXPECT(SKF_GenECCKeyPair(hr, SGD_SM2_1, &blob), SAR_KEYUSAGEERR, "no SM2 key in an RSA container");
  {
    static const BYTE sha256_prefix[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                         0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
    BYTE di[51], rsig[256];
    ULONG slen = sizeof rsig;
    unsigned int dl;
    memcpy(di, sha256_prefix, sizeof sha256_prefix);
    EVP_Digest(msg, strlen(msg), di + 19, &dl, EVP_sha256(), NULL);
    EXPECT(SKF_RSASignData(hr, di, sizeof di, rsig, &slen), SAR_OK, "RSASignData over a DigestInfo");
    check(slen == 256, "a 256-octet signature");
    EXPECT(SKF_RSAVerify(hd, &rblob, di, sizeof di, rsig, slen), SAR_OK, "RSAVerify");
    {
      /* And OpenSSL agrees: RSA PKCS#1 v1.5 with SHA-256 over the message. */
      OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
      BIGNUM *n = BN_bin2bn(rblob.Modulus, 256, NULL), *ex = BN_bin2bn(rblob.PublicExponent, 4, NULL);
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, ex);
      OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
      EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
      EVP_PKEY *pk = NULL;
      EVP_MD_CTX *md = EVP_MD_CTX_new();
      int ok = EVP_PKEY_fromdata_init(kctx) > 0 && EVP_PKEY_fromdata(kctx, &pk, EVP_PKEY_PUBLIC_KEY, params) > 0 &&
               EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
               EVP_DigestVerify(md, rsig, slen, (const unsigned char *)msg, strlen(msg)) == 1;
      check(ok, "OpenSSL verifies the RSA signature (sha256WithRSAEncryption)");
      EVP_MD_CTX_free(md);
      EVP_PKEY_free(pk);
      EVP_PKEY_CTX_free(kctx);
      OSSL_PARAM_free(params);
      OSSL_PARAM_BLD_free(bld);
      BN_free(n);
      BN_free(ex);
    }
  }
  EXPECT(SKF_CloseContainer(hr), SAR_OK, "CloseContainer");
  EXPECT(SKF_DeleteContainer(ha, "rsa"), SAR_OK, "DeleteContainer");

  /* random */
  EXPECT(SKF_GenRandom(hd, rnd1, 32), SAR_OK, "GenRandom");
  EXPECT(SKF_GenRandom(hd, rnd2, 32), SAR_OK, "GenRandom again");
  check(memcmp(rnd1, rnd2, 32) != 0, "two randoms differ");
  EXPECT(SKF_GenRandom(hd, NULL, 32), SAR_INVALIDPARAMERR, "GenRandom(NULL)");

  /* 7.2.2-3 device authentication and 7.3 application life cycle */
  {
    HAPPLICATION hn;
    unsigned char newkey[16];
    memset(newkey, 0x5a, sizeof newkey);
    EXPECT(SKF_CreateApplication(hd, "APP2", "87654321", 10, "12345678", 6, SECURE_USER_ACCOUNT, &hn),
           SAR_USER_NOT_LOGGED_IN, "CreateApplication before device authentication");
    check(dev_auth(hd, key, 1) != SAR_OK, "DevAuth with a wrong cryptogram fails");
    EXPECT(SKF_CreateApplication(hd, "APP2", "87654321", 10, "12345678", 6, SECURE_USER_ACCOUNT, &hn),
           SAR_USER_NOT_LOGGED_IN, "still refused");
    EXPECT((ULONG)dev_auth(hd, key, 0), SAR_OK, "DevAuth: SM4-ECB of the device's random under the key");
    EXPECT(SKF_CreateApplication(hd, "APP2", "87654321", 10, "123", 6, SECURE_USER_ACCOUNT, &hn), SAR_PIN_LEN_RANGE,
           "CreateApplication with a 3-digit PIN");
    EXPECT(SKF_CreateApplication(hd, "APP2", "87654321", 10, "12345678", 6, SECURE_USER_ACCOUNT, &hn), SAR_OK,
           "CreateApplication");
    EXPECT(SKF_CreateApplication(hd, "APP2", "87654321", 10, "12345678", 6, SECURE_USER_ACCOUNT, &hn),
           SAR_APPLICATION_EXISTS, "CreateApplication twice");
    len = sizeof list;
    EXPECT(SKF_EnumApplication(hd, list, &len), SAR_OK, "EnumApplication");
    check(has_name(list, "APP2") && has_name(list, app), "lists both applications");
    EXPECT(SKF_ChangeDevAuthKey(hd, newkey, 16), SAR_OK, "ChangeDevAuthKey");
    check(dev_auth(hd, key, 0) != SAR_OK, "the old device key no longer authenticates");
    EXPECT((ULONG)dev_auth(hd, newkey, 0), SAR_OK, "the new one does");
    EXPECT(SKF_ChangeDevAuthKey(hd, key, 16), SAR_OK, "ChangeDevAuthKey back");
    EXPECT(SKF_DeleteApplication(hd, "APP2"), SAR_OK, "DeleteApplication");
    EXPECT(SKF_OpenApplication(hd, "APP2", &hn), SAR_APPLICATION_NOT_EXISTS, "a deleted application is gone");
    EXPECT(SKF_DeleteApplication(hd, "APP2"), SAR_APPLICATION_NOT_EXISTS, "DeleteApplication twice");
  }

  EXPECT(SKF_DisConnectDev(hd), SAR_OK, "DisConnectDev");
  EXPECT(SKF_DisConnectDev(hd), SAR_INVALIDHANDLEERR, "DisConnectDev twice");
  return finish();
}
