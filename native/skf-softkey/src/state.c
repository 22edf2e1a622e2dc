#define _GNU_SOURCE
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define STATE_MAGIC "skf-softkey-state 1"

const char *ss_root(void) {
  const char *r = getenv("SKF_SOFTKEY_DIR");
  return (r && *r) ? r : NULL;
}

int ss_valid_name(const char *name) {
  size_t n;
  if (!name) return 0;
  n = strlen(name);
  if (n == 0 || n > 63 || name[0] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c == '/' || c < 0x20 || c == 0x7f) return 0;
  }
  return 1;
}

int ss_path(char *out, size_t size, const char *name, const char *file) {
  const char *root = ss_root();
  int n;
  if (!root || !ss_valid_name(name)) return -1;
  n = file ? snprintf(out, size, "%s/%s/%s", root, name, file) : snprintf(out, size, "%s/%s", root, name);
  return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

int ss_present(const char *name) {
  char p[4096];
  struct stat st;
  if (ss_path(p, sizeof p, name, "state") != 0) return 0;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int ss_lock(const char *name) {
  char p[4096];
  int fd;
  if (ss_path(p, sizeof p, name, "lock") != 0) return -1;
  fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  while (flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      close(fd);
      return -1;
    }
  }
  return fd;
}

void ss_unlock(int fd) {
  if (fd >= 0) {
    flock(fd, LOCK_UN);
    close(fd);
  }
}

int ss_buf_set(ss_buf *b, const void *p, size_t n) {
  unsigned char *q = NULL;
  if (n) {
    q = malloc(n);
    if (!q) return -1;
    memcpy(q, p, n);
  }
  ss_buf_clear(b);
  b->p = q;
  b->n = n;
  return 0;
}

void ss_buf_clear(ss_buf *b) {
  if (b->p) {
    OPENSSL_cleanse(b->p, b->n);
    free(b->p);
  }
  b->p = NULL;
  b->n = 0;
}

static void free_container(ss_container *c) {
  ss_buf_clear(&c->sign_priv);
  ss_buf_clear(&c->sign_pub);
  ss_buf_clear(&c->enc_priv);
  ss_buf_clear(&c->enc_pub);
  ss_buf_clear(&c->sign_cert);
  ss_buf_clear(&c->enc_cert);
  free(c);
}

static void free_app(ss_app *a) {
  ss_container *c = a->containers;
  while (c) {
    ss_container *n = c->next;
    free_container(c);
    c = n;
  }
  OPENSSL_cleanse(a, sizeof *a);
  free(a);
}

void ss_free(ss_device *dev) {
  ss_app *a = dev->apps;
  while (a) {
    ss_app *n = a->next;
    free_app(a);
    a = n;
  }
  OPENSSL_cleanse(dev, sizeof *dev);
}

ss_app *ss_find_app(ss_device *dev, const char *name) {
  for (ss_app *a = dev->apps; a; a = a->next)
    if (strcmp(a->name, name) == 0) return a;
  return NULL;
}

ss_container *ss_find_container(ss_app *app, const char *name) {
  for (ss_container *c = app->containers; c; c = c->next)
    if (strcmp(c->name, name) == 0) return c;
  return NULL;
}

ss_app *ss_add_app(ss_device *dev) {
  ss_app *a = calloc(1, sizeof *a), **tail = &dev->apps;
  if (!a) return NULL;
  while (*tail) tail = &(*tail)->next;
  *tail = a;
  return a;
}

ss_container *ss_add_container(ss_app *app) {
  ss_container *c = calloc(1, sizeof *c), **tail = &app->containers;
  if (!c) return NULL;
  while (*tail) tail = &(*tail)->next;
  *tail = c;
  return c;
}

void ss_remove_app(ss_device *dev, ss_app *app) {
  for (ss_app **p = &dev->apps; *p; p = &(*p)->next)
    if (*p == app) {
      *p = app->next;
      free_app(app);
      return;
    }
}

void ss_remove_container(ss_app *app, ss_container *c) {
  for (ss_container **p = &app->containers; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      free_container(c);
      return;
    }
}

uint32_t ss_used_space(const ss_device *dev) {
  uint64_t used = 0;
  for (const ss_app *a = dev->apps; a; a = a->next) {
    used += SK_APP_OVERHEAD;
    for (const ss_container *c = a->containers; c; c = c->next)
      used += SK_CONTAINER_OVERHEAD + c->sign_priv.n + c->sign_pub.n + c->enc_priv.n + c->enc_pub.n + c->sign_cert.n +
              c->enc_cert.n;
  }
  return used > 0xffffffffu ? 0xffffffffu : (uint32_t)used;
}

/* ---- text format: one record a line, "kind key=value ...", strings and octets in hex ---- */

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int unhex(const char *s, size_t len, ss_buf *out) {
  unsigned char *p;
  if (len % 2) return -1;
  if (len == 0) {
    ss_buf_clear(out);
    return 0;
  }
  p = malloc(len / 2);
  if (!p) return -1;
  for (size_t i = 0; i < len / 2; i++) {
    int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
    if (h < 0 || l < 0) {
      free(p);
      return -1;
    }
    p[i] = (unsigned char)(h << 4 | l);
  }
  ss_buf_clear(out);
  out->p = p;
  out->n = len / 2;
  return 0;
}

/* Finds key=value in a record line; returns the value's start and length. */
static const char *field(const char *line, const char *key, size_t *len) {
  size_t kl = strlen(key);
  const char *p = line;
  while ((p = strchr(p, ' ')) != NULL) {
    p++;
    if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
      const char *v = p + kl + 1;
      *len = strcspn(v, " \n");
      return v;
    }
  }
  return NULL;
}

static int field_u32(const char *line, const char *key, uint32_t *out) {
  size_t len;
  const char *v = field(line, key, &len);
  char tmp[16];
  char *end;
  unsigned long x;
  if (!v || len == 0 || len >= sizeof tmp) return -1;
  memcpy(tmp, v, len);
  tmp[len] = 0;
  x = strtoul(tmp, &end, 10);
  if (*end || x > 0xffffffffUL) return -1;
  *out = (uint32_t)x;
  return 0;
}

static int field_buf(const char *line, const char *key, ss_buf *out) {
  size_t len;
  const char *v = field(line, key, &len);
  if (!v) return -1;
  return unhex(v, len, out);
}

static int field_str(const char *line, const char *key, char *out, size_t size) {
  ss_buf b = {0};
  if (field_buf(line, key, &b) != 0 || b.n >= size || memchr(b.p, 0, b.n)) {
    ss_buf_clear(&b);
    return -1;
  }
  if (b.n) memcpy(out, b.p, b.n);
  out[b.n] = 0;
  ss_buf_clear(&b);
  return 0;
}

int ss_load(const char *name, ss_device *dev) {
  char p[4096];
  FILE *f;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int lineno = 0, rc = 0;
  ss_app *app = NULL;
  memset(dev, 0, sizeof *dev);
  if (ss_path(p, sizeof p, name, "state") != 0) return -1;
  f = fopen(p, "re");
  if (!f) return errno == ENOENT ? -1 : -2;
  while ((n = getline(&line, &cap, f)) > 0) {
    lineno++;
    if (line[n - 1] == '\n') line[--n] = 0;
    if (lineno == 1) {
      if (strcmp(line, STATE_MAGIC) != 0) rc = -2;
    } else if (strncmp(line, "device ", 7) == 0) {
      ss_buf key = {0};
      if (field_str(line, "label", dev->label, sizeof dev->label) || field_str(line, "serial", dev->serial, sizeof dev->serial) ||
          field_str(line, "manufacturer", dev->manufacturer, sizeof dev->manufacturer) ||
          field_str(line, "issuer", dev->issuer, sizeof dev->issuer) || field_u32(line, "hw_major", &dev->hw_major) ||
          field_u32(line, "hw_minor", &dev->hw_minor) || field_u32(line, "fw_major", &dev->fw_major) ||
          field_u32(line, "fw_minor", &dev->fw_minor) || field_u32(line, "total_space", &dev->total_space) ||
          field_u32(line, "max_containers", &dev->max_containers) ||
          field_u32(line, "button_timeout_ms", &dev->button_timeout_ms) ||
          field_u32(line, "devauth_max", &dev->devauth_max) || field_u32(line, "devauth_remain", &dev->devauth_remain) ||
          field_buf(line, "devauth_key", &key) || key.n != 16)
        rc = -2;
      else
        memcpy(dev->devauth_key, key.p, 16);
      /* Optional: a vendor's quirk. */
      if (!rc && field_u32(line, "envelope_left", &dev->envelope_left) != 0) dev->envelope_left = 0;
      ss_buf_clear(&key);
    } else if (strncmp(line, "app ", 4) == 0) {
      app = ss_add_app(dev);
      if (!app || field_str(line, "name", app->name, sizeof app->name) ||
          field_str(line, "admin_pin", app->admin_pin, sizeof app->admin_pin) ||
          field_str(line, "user_pin", app->user_pin, sizeof app->user_pin) ||
          field_u32(line, "admin_max", &app->admin_max) || field_u32(line, "admin_remain", &app->admin_remain) ||
          field_u32(line, "user_max", &app->user_max) || field_u32(line, "user_remain", &app->user_remain) ||
          field_u32(line, "admin_default", &app->admin_default) || field_u32(line, "user_default", &app->user_default) ||
          field_u32(line, "create_rights", &app->create_rights))
        rc = -2;
    } else if (strncmp(line, "container ", 10) == 0) {
      ss_container *c = app ? ss_add_container(app) : NULL;
      if (!c || field_str(line, "name", c->name, sizeof c->name) || field_u32(line, "type", &c->type) ||
          field_buf(line, "sign_priv", &c->sign_priv) || field_buf(line, "sign_pub", &c->sign_pub) ||
          field_buf(line, "enc_priv", &c->enc_priv) || field_buf(line, "enc_pub", &c->enc_pub) ||
          field_buf(line, "sign_cert", &c->sign_cert) || field_buf(line, "enc_cert", &c->enc_cert))
        rc = -2;
    } else if (line[0] != 0) {
      rc = -2;
    }
    if (rc) break;
  }
  if (lineno == 0) rc = -2;
  free(line);
  fclose(f);
  if (rc) ss_free(dev);
  return rc;
}

static void put_hex(FILE *f, const char *key, const void *p, size_t n) {
  const unsigned char *b = p;
  fprintf(f, " %s=", key);
  for (size_t i = 0; i < n; i++) fprintf(f, "%02x", b[i]);
}

static void put_str(FILE *f, const char *key, const char *s) { put_hex(f, key, s, strlen(s)); }

int ss_save(const char *name, const ss_device *dev) {
  char p[4096], tmp[4200], dir[4096];
  FILE *f;
  int fd, ok;
  if (ss_path(p, sizeof p, name, "state") != 0 || ss_path(dir, sizeof dir, name, NULL) != 0) return -1;
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    unlink(tmp);
    return -1;
  }
  fprintf(f, "%s\ndevice", STATE_MAGIC);
  put_str(f, "label", dev->label);
  put_str(f, "serial", dev->serial);
  put_str(f, "manufacturer", dev->manufacturer);
  put_str(f, "issuer", dev->issuer);
  fprintf(f, " hw_major=%u hw_minor=%u fw_major=%u fw_minor=%u total_space=%u max_containers=%u button_timeout_ms=%u"
             " devauth_max=%u devauth_remain=%u",
          dev->hw_major, dev->hw_minor, dev->fw_major, dev->fw_minor, dev->total_space, dev->max_containers,
          dev->button_timeout_ms, dev->devauth_max, dev->devauth_remain);
  put_hex(f, "devauth_key", dev->devauth_key, 16);
  if (dev->envelope_left) fprintf(f, " envelope_left=1");
  fputc('\n', f);
  for (const ss_app *a = dev->apps; a; a = a->next) {
    fputs("app", f);
    put_str(f, "name", a->name);
    put_str(f, "admin_pin", a->admin_pin);
    put_str(f, "user_pin", a->user_pin);
    fprintf(f, " admin_max=%u admin_remain=%u user_max=%u user_remain=%u admin_default=%u user_default=%u create_rights=%u\n",
            a->admin_max, a->admin_remain, a->user_max, a->user_remain, a->admin_default, a->user_default,
            a->create_rights);
    for (const ss_container *c = a->containers; c; c = c->next) {
      fputs("container", f);
      put_str(f, "name", c->name);
      fprintf(f, " type=%u", c->type);
      put_hex(f, "sign_priv", c->sign_priv.p, c->sign_priv.n);
      put_hex(f, "sign_pub", c->sign_pub.p, c->sign_pub.n);
      put_hex(f, "enc_priv", c->enc_priv.p, c->enc_priv.n);
      put_hex(f, "enc_pub", c->enc_pub.p, c->enc_pub.n);
      put_hex(f, "sign_cert", c->sign_cert.p, c->sign_cert.n);
      put_hex(f, "enc_cert", c->enc_cert.p, c->enc_cert.n);
      fputc('\n', f);
    }
  }
  ok = fflush(f) == 0 && fsync(fd) == 0;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, p) != 0) {
    unlink(tmp);
    return -1;
  }
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  return 0;
}
