#include "crypto.h"

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

static int bn_to_32(const BIGNUM *bn, unsigned char out[32]) { return BN_bn2binpad(bn, out, 32) == 32 ? 0 : -1; }

/* An SM2 EVP_PKEY from its public point and, when d is given, its private key. */
static EVP_PKEY *sm2_pkey(const unsigned char *d, const unsigned char pub[65]) {
  EVP_PKEY_CTX *ctx = NULL;
  EVP_PKEY *pkey = NULL;
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM *params = NULL;
  BIGNUM *priv = NULL;
  if (!bld) return NULL;
  if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "SM2", 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 65))
    goto done;
  if (d) {
    priv = BN_secure_new();
    if (!priv || !BN_bin2bn(d, 32, priv) || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv)) goto done;
  }
  params = OSSL_PARAM_BLD_to_param(bld);
  ctx = EVP_PKEY_CTX_new_from_name(NULL, "SM2", NULL);
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
      EVP_PKEY_fromdata(ctx, &pkey, d ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) <= 0)
    pkey = NULL;
done:
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_clear_free(priv);
  return pkey;
}

int ss_sm2_check_point(const unsigned char pub[65]) {
  EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_sm2);
  EC_POINT *p = g ? EC_POINT_new(g) : NULL;
  int rc = -1;
  if (p && pub[0] == 4 && EC_POINT_oct2point(g, p, pub, 65, NULL) == 1 && EC_POINT_is_on_curve(g, p, NULL) == 1 &&
      !EC_POINT_is_at_infinity(g, p))
    rc = 0;
  EC_POINT_free(p);
  EC_GROUP_free(g);
  return rc;
}

int ss_sm2_pub_from_priv(const unsigned char d[32], unsigned char pub[65]) {
  EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_sm2);
  EC_POINT *p = g ? EC_POINT_new(g) : NULL;
  BIGNUM *k = BN_secure_new();
  BIGNUM *nm1 = BN_new();
  int rc = -1;
  if (!p || !k || !nm1 || !BN_bin2bn(d, 32, k)) goto done;
  /* SM2 private keys are in [1, n-2]. */
  if (BN_is_zero(k) || !BN_copy(nm1, EC_GROUP_get0_order(g)) || !BN_sub_word(nm1, 1) || BN_cmp(k, nm1) >= 0) goto done;
  if (EC_POINT_mul(g, p, k, NULL, NULL, NULL) != 1) goto done;
  if (EC_POINT_point2oct(g, p, POINT_CONVERSION_UNCOMPRESSED, pub, 65, NULL) != 65) goto done;
  rc = 0;
done:
  BN_clear_free(k);
  BN_free(nm1);
  EC_POINT_free(p);
  EC_GROUP_free(g);
  return rc;
}

int ss_sm2_keygen(unsigned char d[32], unsigned char pub[65]) {
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "SM2", NULL);
  EVP_PKEY *pkey = NULL;
  BIGNUM *priv = NULL;
  size_t publen = 0;
  int rc = -1;
  if (!ctx || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_generate(ctx, &pkey) <= 0) goto done;
  if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &priv) || bn_to_32(priv, d) != 0) goto done;
  if (!EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, 65, &publen) || publen != 65 || pub[0] != 4)
    goto done;
  rc = 0;
done:
  BN_clear_free(priv);
  EVP_PKEY_free(pkey);
  EVP_PKEY_CTX_free(ctx);
  return rc;
}

int ss_sm2_sign_digest(const unsigned char d[32], const unsigned char pub[65], const unsigned char e[32],
                       unsigned char r[32], unsigned char s[32]) {
  EVP_PKEY *pkey = sm2_pkey(d, pub);
  EVP_PKEY_CTX *ctx = pkey ? EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL) : NULL;
  unsigned char der[128];
  size_t derlen = sizeof der;
  const unsigned char *q = der;
  ECDSA_SIG *sig = NULL;
  int rc = -1;
  /* The SM2 signature operation without a digest signs its input as e (Z is the caller's). */
  if (!ctx || EVP_PKEY_sign_init(ctx) <= 0 || EVP_PKEY_sign(ctx, der, &derlen, e, 32) <= 0) goto done;
  sig = d2i_ECDSA_SIG(NULL, &q, (long)derlen);
  if (!sig || bn_to_32(ECDSA_SIG_get0_r(sig), r) != 0 || bn_to_32(ECDSA_SIG_get0_s(sig), s) != 0) goto done;
  rc = 0;
done:
  ECDSA_SIG_free(sig);
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  return rc;
}

int ss_sm2_verify_digest(const unsigned char pub[65], const unsigned char e[32], const unsigned char r[32],
                         const unsigned char s[32]) {
  EVP_PKEY *pkey = NULL;
  EVP_PKEY_CTX *ctx = NULL;
  ECDSA_SIG *sig = ECDSA_SIG_new();
  BIGNUM *br = BN_bin2bn(r, 32, NULL), *bs = BN_bin2bn(s, 32, NULL);
  unsigned char *der = NULL;
  int derlen, v, rc = -1;
  if (ss_sm2_check_point(pub) != 0) {
    BN_free(br);
    BN_free(bs);
    ECDSA_SIG_free(sig);
    return -1;
  }
  if (!sig || !br || !bs || !ECDSA_SIG_set0(sig, br, bs)) {
    BN_free(br);
    BN_free(bs);
    goto done;
  }
  derlen = i2d_ECDSA_SIG(sig, &der);
  pkey = sm2_pkey(NULL, pub);
  ctx = pkey ? EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL) : NULL;
  if (derlen <= 0 || !ctx || EVP_PKEY_verify_init(ctx) <= 0) goto done;
  v = EVP_PKEY_verify(ctx, der, (size_t)derlen, e, 32);
  rc = v == 1 ? 0 : 1;
done:
  OPENSSL_free(der);
  ECDSA_SIG_free(sig);
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  return rc;
}

/* GM/T 0009 SM2Cipher: SEQUENCE { INTEGER x1, INTEGER y1, OCTET STRING C3, OCTET STRING C2 }, what OpenSSL decrypts. */
static int sm2_cipher_der(const unsigned char x1[32], const unsigned char y1[32], const unsigned char c3[32],
                          const unsigned char *c2, size_t c2len, unsigned char **out) {
  BIGNUM *bx = BN_bin2bn(x1, 32, NULL), *by = BN_bin2bn(y1, 32, NULL);
  ASN1_INTEGER *ix = bx ? BN_to_ASN1_INTEGER(bx, NULL) : NULL, *iy = by ? BN_to_ASN1_INTEGER(by, NULL) : NULL;
  ASN1_OCTET_STRING *h = ASN1_OCTET_STRING_new(), *c = ASN1_OCTET_STRING_new();
  int n = -1, body, total;
  unsigned char *buf = NULL, *p;
  if (!ix || !iy || !h || !c || !ASN1_OCTET_STRING_set(h, c3, 32) || !ASN1_OCTET_STRING_set(c, c2, (int)c2len)) goto done;
  body = i2d_ASN1_INTEGER(ix, NULL) + i2d_ASN1_INTEGER(iy, NULL) + i2d_ASN1_OCTET_STRING(h, NULL) +
         i2d_ASN1_OCTET_STRING(c, NULL);
  total = ASN1_object_size(1, body, V_ASN1_SEQUENCE);
  buf = OPENSSL_malloc((size_t)total);
  if (!buf) goto done;
  p = buf;
  ASN1_put_object(&p, 1, body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
  i2d_ASN1_INTEGER(ix, &p);
  i2d_ASN1_INTEGER(iy, &p);
  i2d_ASN1_OCTET_STRING(h, &p);
  i2d_ASN1_OCTET_STRING(c, &p);
  *out = buf;
  buf = NULL;
  n = total;
done:
  OPENSSL_free(buf);
  BN_free(bx);
  BN_free(by);
  ASN1_INTEGER_free(ix);
  ASN1_INTEGER_free(iy);
  ASN1_OCTET_STRING_free(h);
  ASN1_OCTET_STRING_free(c);
  return n;
}

int ss_sm2_decrypt(const unsigned char d[32], const unsigned char pub[65], const unsigned char x1[32],
                   const unsigned char y1[32], const unsigned char c3[32], const unsigned char *c2, size_t c2len,
                   unsigned char *out) {
  EVP_PKEY *pkey = sm2_pkey(d, pub);
  EVP_PKEY_CTX *ctx = pkey ? EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL) : NULL;
  unsigned char *der = NULL, *plain = NULL;
  size_t plainlen = 0;
  int derlen = sm2_cipher_der(x1, y1, c3, c2, c2len, &der), rc = -1;
  if (derlen <= 0 || !ctx || EVP_PKEY_decrypt_init(ctx) <= 0 ||
      EVP_PKEY_decrypt(ctx, NULL, &plainlen, der, (size_t)derlen) <= 0)
    goto done;
  plain = OPENSSL_secure_malloc(plainlen ? plainlen : 1);
  if (!plain || EVP_PKEY_decrypt(ctx, plain, &plainlen, der, (size_t)derlen) <= 0 || plainlen != c2len) goto done;
  memcpy(out, plain, c2len);
  rc = 0;
done:
  if (plain) OPENSSL_secure_clear_free(plain, c2len);
  OPENSSL_free(der);
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  return rc;
}

int ss_sm4_ecb(int encrypt, const unsigned char key[16], const unsigned char *in, size_t len, unsigned char *out) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  EVP_CIPHER *sm4 = EVP_CIPHER_fetch(NULL, "SM4-ECB", NULL);
  int n1 = 0, n2 = 0, rc = -1;
  if (len % 16 || len > 0x7fffffff) goto done;
  if (!ctx || !sm4 || EVP_CipherInit_ex(ctx, sm4, NULL, key, NULL, encrypt) != 1 || EVP_CIPHER_CTX_set_padding(ctx, 0) != 1)
    goto done;
  if (EVP_CipherUpdate(ctx, out, &n1, in, (int)len) != 1 || EVP_CipherFinal_ex(ctx, out + n1, &n2) != 1 ||
      (size_t)(n1 + n2) != len)
    goto done;
  rc = 0;
done:
  EVP_CIPHER_free(sm4);
  EVP_CIPHER_CTX_free(ctx);
  return rc;
}

int ss_rsa_keygen(unsigned bits, unsigned char **der, size_t *derlen, unsigned char modulus[256],
                  unsigned char exponent[4]) {
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
  EVP_PKEY *pkey = NULL;
  BIGNUM *n = NULL, *e = NULL;
  int len, rc = -1;
  unsigned char *p = NULL;
  if (!ctx || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) <= 0 ||
      EVP_PKEY_generate(ctx, &pkey) <= 0)
    goto done;
  if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) || !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e))
    goto done;
  if (BN_bn2binpad(n, modulus, 256) != 256 || BN_bn2binpad(e, exponent, 4) != 4) goto done;
  len = i2d_PrivateKey(pkey, &p);
  if (len <= 0) goto done;
  *der = p;
  *derlen = (size_t)len;
  rc = 0;
done:
  BN_free(n);
  BN_free(e);
  EVP_PKEY_free(pkey);
  EVP_PKEY_CTX_free(ctx);
  return rc;
}

int ss_rsa_sign(const unsigned char *der, size_t derlen, const unsigned char *data, size_t len, unsigned char *sig,
                size_t *siglen) {
  const unsigned char *q = der;
  EVP_PKEY *pkey = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &q, (long)derlen);
  EVP_PKEY_CTX *ctx = pkey ? EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL) : NULL;
  int rc = -1;
  if (ctx && EVP_PKEY_sign_init(ctx) > 0 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0 &&
      EVP_PKEY_sign(ctx, sig, siglen, data, len) > 0)
    rc = 0;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  return rc;
}

int ss_rsa_verify(const unsigned char *modulus, size_t modlen, const unsigned char exponent[4], const unsigned char *data,
                  size_t len, const unsigned char *sig, size_t siglen) {
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM *params = NULL;
  BIGNUM *n = BN_bin2bn(modulus, (int)modlen, NULL), *e = BN_bin2bn(exponent, 4, NULL);
  EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL), *ctx = NULL;
  EVP_PKEY *pkey = NULL;
  int rc = -1;
  if (!bld || !n || !e || !kctx || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
      !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) || !(params = OSSL_PARAM_BLD_to_param(bld)) ||
      EVP_PKEY_fromdata_init(kctx) <= 0 || EVP_PKEY_fromdata(kctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
    goto done;
  ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
  if (!ctx || EVP_PKEY_verify_init(ctx) <= 0 || EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0) goto done;
  rc = EVP_PKEY_verify(ctx, sig, siglen, data, len) == 1 ? 0 : 1;
done:
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_CTX_free(kctx);
  EVP_PKEY_free(pkey);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(n);
  BN_free(e);
  return rc;
}

int ss_random(unsigned char *out, size_t n) { return RAND_bytes(out, (int)n) == 1 ? 0 : -1; }
