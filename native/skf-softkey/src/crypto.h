/* SM2, SM4 and RSA through OpenSSL 3's EVP interface. Each returns 0 on success. */
#ifndef SKF_SOFTKEY_CRYPTO_H
#define SKF_SOFTKEY_CRYPTO_H

#include <stddef.h>

/* A new SM2 key pair: d (32 octets, big-endian) and 04||x||y (65 octets). */
int ss_sm2_keygen(unsigned char d[32], unsigned char pub[65]);
/* d·G as 04||x||y; fails when d is not in [1, n-1]. */
int ss_sm2_pub_from_priv(const unsigned char d[32], unsigned char pub[65]);
/* 0 if pub (04||x||y) is a point of the SM2 curve. */
int ss_sm2_check_point(const unsigned char pub[65]);
/* SM2 signature of the digest e (the caller's SM3(Z||M)); r and s 32 octets each. */
int ss_sm2_sign_digest(const unsigned char d[32], const unsigned char pub[65], const unsigned char e[32],
                       unsigned char r[32], unsigned char s[32]);
/* 0 if (r, s) is a valid SM2 signature of e under pub; 1 if not; -1 on error. */
int ss_sm2_verify_digest(const unsigned char pub[65], const unsigned char e[32], const unsigned char r[32],
                         const unsigned char s[32]);
/* GB/T 32918.4 decryption of C1 = (x1, y1), C3, C2 (c2len octets); out gets c2len octets. */
int ss_sm2_decrypt(const unsigned char d[32], const unsigned char pub[65], const unsigned char x1[32],
                   const unsigned char y1[32], const unsigned char c3[32], const unsigned char *c2, size_t c2len,
                   unsigned char *out);
/* SM4-ECB without padding; len a multiple of 16. */
int ss_sm4_ecb(int encrypt, const unsigned char key[16], const unsigned char *in, size_t len, unsigned char *out);
/* RSA: a new key (PKCS#8 DER, malloc'd), its modulus (right-aligned in 256) and exponent (right-aligned in 4). */
int ss_rsa_keygen(unsigned bits, unsigned char **der, size_t *derlen, unsigned char modulus[256],
                  unsigned char exponent[4]);
/* RSA PKCS#1 v1.5 private-key operation on data (a DigestInfo); sig gets the modulus length. */
int ss_rsa_sign(const unsigned char *der, size_t derlen, const unsigned char *data, size_t len, unsigned char *sig,
                size_t *siglen);
int ss_rsa_verify(const unsigned char *modulus, size_t modlen, const unsigned char exponent[4], const unsigned char *data,
                  size_t len, const unsigned char *sig, size_t siglen);
int ss_random(unsigned char *out, size_t n);

#endif
