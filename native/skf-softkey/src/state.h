/* On-disk state of one software key: parse, serialise, lock. See docs/skf-softkey.md. */
#ifndef SKF_SOFTKEY_STATE_H
#define SKF_SOFTKEY_STATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  unsigned char *p;
  size_t n;
} ss_buf;

typedef struct ss_container {
  char name[65];
  uint32_t type; /* CONTAINER_TYPE_* */
  ss_buf sign_priv; /* ECC: d (32); RSA: PKCS#8 DER */
  ss_buf sign_pub;  /* ECC: 04||x||y (65); RSA: empty */
  ss_buf enc_priv;  /* ECC encryption key imported by envelope */
  ss_buf enc_pub;
  ss_buf sign_cert;
  ss_buf enc_cert;
  struct ss_container *next;
} ss_container;

typedef struct ss_app {
  char name[33];
  char admin_pin[17];
  char user_pin[17];
  uint32_t admin_max, admin_remain, user_max, user_remain;
  uint32_t admin_default, user_default;
  uint32_t create_rights;
  ss_container *containers;
  struct ss_app *next;
} ss_app;

typedef struct {
  char label[33];
  char serial[33];
  char manufacturer[65];
  char issuer[65];
  uint32_t hw_major, hw_minor, fw_major, fw_minor;
  uint32_t total_space;
  uint32_t max_containers;
  uint32_t button_timeout_ms;
  uint32_t devauth_max, devauth_remain;
  unsigned char devauth_key[16];
  /* Where SKF_ImportECCKeyPair reads the encrypted private key in cbEncryptedPriKey[64]:
   * 0 the last 32 octets (the standard's right alignment), 1 the first 32 (as some vendors' libraries do). */
  uint32_t envelope_left;
  ss_app *apps;
} ss_device;

/* $SKF_SOFTKEY_DIR, or NULL. */
const char *ss_root(void);
/* Writes "<root>/<name>/<file>" into out; 0 on success. */
int ss_path(char *out, size_t size, const char *name, const char *file);
/* 1 if name is a safe device name (no '/', not starting with '.', 1..63 octets). */
int ss_valid_name(const char *name);
/* 1 if the device's state file exists. */
int ss_present(const char *name);

/* Takes the device's lock (flock on <dev>/lock); returns the fd or -1. */
int ss_lock(const char *name);
void ss_unlock(int fd);

/* Loads the state; returns 0, or -1 (absent), or -2 (unreadable). */
int ss_load(const char *name, ss_device *dev);
/* Writes the state atomically (temporary file, fsync, rename); 0 on success. */
int ss_save(const char *name, const ss_device *dev);
void ss_free(ss_device *dev);

/* Octets the stored objects take, counted against total_space. */
uint32_t ss_used_space(const ss_device *dev);
ss_app *ss_find_app(ss_device *dev, const char *name);
ss_container *ss_find_container(ss_app *app, const char *name);
ss_app *ss_add_app(ss_device *dev);
ss_container *ss_add_container(ss_app *app);
void ss_remove_app(ss_device *dev, ss_app *app);
void ss_remove_container(ss_app *app, ss_container *c);
int ss_buf_set(ss_buf *b, const void *p, size_t n);
void ss_buf_clear(ss_buf *b);

#define SK_APP_OVERHEAD 256
#define SK_CONTAINER_OVERHEAD 64

#endif
