/*
 * skf-softkey: a software GM/T 0016-2012 (SKF) key for tests. Real SM2, SM3
 * and SM4 through OpenSSL 3; state in $SKF_SOFTKEY_DIR/<device>/state.
 * Not a vendor library and not a secure store: see docs/skf-softkey.md.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#pragma GCC visibility push(default)
#include "skf.h"
#pragma GCC visibility pop

#include "crypto.h"
#include "state.h"

#define MAGIC_DEV 0x534b4456u
#define MAGIC_APP 0x534b4150u
#define MAGIC_CON 0x534b434eu
#define MIN_PIN_LEN 6
#define MAX_PIN_LEN 16
#define ECC_BLOB_SIZE ((ULONG)sizeof(ECCPUBLICKEYBLOB))
#define RSA_BLOB_SIZE ((ULONG)sizeof(RSAPUBLICKEYBLOB))
#define MAX_ECC_CIPHER 1024

typedef struct {
  uint32_t magic;
  char name[64];
  unsigned char challenge[16];
  int challenge_len;
  int authed;
} dev_h;

typedef struct {
  uint32_t magic;
  dev_h *dev;
  char name[MAX_APPNAME_LEN + 1];
  int user, admin;
} app_h;

typedef struct {
  uint32_t magic;
  app_h *app;
  char name[MAX_CNTNAME_LEN + 1];
} con_h;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
#define MAX_HANDLES 4096
static void *handles[MAX_HANDLES];

static int reg(void *h) {
  for (int i = 0; i < MAX_HANDLES; i++)
    if (!handles[i]) {
      handles[i] = h;
      return 0;
    }
  return -1;
}

static void unreg(void *h) {
  for (int i = 0; i < MAX_HANDLES; i++)
    if (handles[i] == h) handles[i] = NULL;
}

/* A handle is valid only if this library made it and has not closed it. */
static int live(const void *h, uint32_t magic) {
  if (!h) return 0;
  for (int i = 0; i < MAX_HANDLES; i++)
    if (handles[i] == h) return *(const uint32_t *)h == magic;
  return 0;
}

static void free_handle(void *h) {
  unreg(h);
  OPENSSL_cleanse(h, sizeof(uint32_t));
  free(h);
}

static void close_containers_of(app_h *a) {
  for (int i = 0; i < MAX_HANDLES; i++) {
    con_h *c = handles[i];
    if (c && c->magic == MAGIC_CON && c->app == a) free_handle(c);
  }
}

static void close_apps_of(dev_h *d) {
  for (int i = 0; i < MAX_HANDLES; i++) {
    app_h *a = handles[i];
    if (a && a->magic == MAGIC_APP && a->dev == d) {
      close_containers_of(a);
      free_handle(a);
    }
  }
}

/* ---- one operation on a device's state: lock, load, (change, save), unlock ---- */

typedef struct {
  const char *name;
  int lockfd;
  int loaded;
  ss_device dev;
  ss_app *app;
  ss_container *con;
} op_t;

static ULONG op_open(op_t *o, const char *name) {
  int rc;
  memset(o, 0, sizeof *o);
  o->name = name;
  o->lockfd = -1;
  if (!ss_present(name)) return SAR_DEVICE_REMOVED;
  o->lockfd = ss_lock(name);
  if (o->lockfd < 0) return ss_present(name) ? SAR_FILEERR : SAR_DEVICE_REMOVED;
  rc = ss_load(name, &o->dev);
  if (rc == -1) return SAR_DEVICE_REMOVED;
  if (rc != 0) return SAR_READFILEERR;
  o->loaded = 1;
  return SAR_OK;
}

static ULONG op_open_app(op_t *o, app_h *a) {
  ULONG r = op_open(o, a->dev->name);
  if (r) return r;
  o->app = ss_find_app(&o->dev, a->name);
  return o->app ? SAR_OK : SAR_APPLICATION_NOT_EXISTS;
}

static ULONG op_open_con(op_t *o, con_h *c) {
  ULONG r = op_open_app(o, c->app);
  if (r) return r;
  o->con = ss_find_container(o->app, c->name);
  return o->con ? SAR_OK : SAR_INVALIDHANDLEERR;
}

static ULONG op_save(op_t *o) {
  if (!ss_present(o->name)) return SAR_DEVICE_REMOVED;
  return ss_save(o->name, &o->dev) == 0 ? SAR_OK : SAR_WRITEFILEERR;
}

static void op_close(op_t *o) {
  if (o->loaded) ss_free(&o->dev);
  o->loaded = 0;
  ss_unlock(o->lockfd);
  o->lockfd = -1;
}

static int fits(const ss_device *dev, size_t extra) {
  return (uint64_t)ss_used_space(dev) + extra <= (uint64_t)dev->total_space;
}

static void copy_field(char *dst, size_t size, const char *src) {
  size_t n = strlen(src);
  memset(dst, 0, size);
  memcpy(dst, src, n < size ? n : size);
}

/* A name list of the standard: each name NUL-terminated, the list ended by one more NUL. */
static ULONG put_names(char **names, int count, LPSTR out, ULONG *size) {
  ULONG need = 1, at = 0;
  for (int i = 0; i < count; i++) need += (ULONG)strlen(names[i]) + 1;
  if (count == 0) need = 2;
  if (!out) {
    *size = need;
    return SAR_OK;
  }
  if (*size < need) {
    *size = need;
    return SAR_BUFFER_TOO_SMALL;
  }
  memset(out, 0, need);
  for (int i = 0; i < count; i++) {
    size_t n = strlen(names[i]);
    memcpy(out + at, names[i], n + 1);
    at += (ULONG)n + 1;
  }
  *size = need;
  return SAR_OK;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Present devices, sorted; returns the count (names malloc'd) or -1. */
static int list_devices(char ***out) {
  const char *root = ss_root();
  DIR *d;
  struct dirent *e;
  char **names = NULL;
  int n = 0, cap = 0;
  *out = NULL;
  if (!root) return 0;
  d = opendir(root);
  if (!d) return 0;
  while ((e = readdir(d)) != NULL) {
    if (!ss_valid_name(e->d_name) || !ss_present(e->d_name)) continue;
    if (n == cap) {
      char **m = realloc(names, sizeof *names * (size_t)(cap = cap ? cap * 2 : 8));
      if (!m) break;
      names = m;
    }
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  if (n) qsort(names, (size_t)n, sizeof *names, cmp_names);
  *out = names;
  return n;
}

static void free_names(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

/* ---- the key's button ---- */

static void trim(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
}

static int read_small(const char *dev, const char *file, char *out, size_t size) {
  char p[4096];
  FILE *f;
  size_t n;
  if (ss_path(p, sizeof p, dev, file) != 0) return -1;
  f = fopen(p, "re");
  if (!f) return -1;
  n = fread(out, 1, size - 1, f);
  out[n] = 0;
  fclose(f);
  trim(out);
  return 0;
}

/* Appends to `file`, or replaces it whole: written beside it and renamed, so that a reader (a test waiting for
   `pending`) never sees it empty or in part. */
static void write_small(const char *dev, const char *file, const char *text, int append) {
  char p[4096], tmp[4200];
  FILE *f;
  if (ss_path(p, sizeof p, dev, file) != 0) return;
  if (append) {
    f = fopen(p, "ae");
    if (!f) return;
    fputs(text, f);
    fclose(f);
    return;
  }
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", p, (long)getpid());
  f = fopen(tmp, "we");
  if (!f) return;
  fputs(text, f);
  if (fclose(f) != 0 || rename(tmp, p) != 0) unlink(tmp);
}

static void remove_file(const char *dev, const char *file) {
  char p[4096];
  if (ss_path(p, sizeof p, dev, file) == 0) unlink(p);
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static ULONG log_press(const char *dev, const char *op, ULONG r) {
  char line[128];
  snprintf(line, sizeof line, "%s %s\n", op,
           r == SAR_OK ? "ok" : r == SAR_USER_CANCEL ? "cancel" : r == SAR_TIMEOUTERR ? "timeout" : "error");
  write_small(dev, "button.log", line, 1);
  return r;
}

/*
 * The on-device confirmation. <dev>/button holds auto (or is absent), refuse,
 * timeout or wait; in wait, <dev>/pending names the operation until a
 * <dev>/press file appears (content "cancel" refuses) or the device's
 * button_timeout_ms passes. Called with the library's mutex released.
 */
static ULONG button(const char *dev, const char *op, uint32_t timeout_ms) {
  char mode[64] = "", press[64];
  if (read_small(dev, "button", mode, sizeof mode) != 0 || mode[0] == 0 || strcmp(mode, "auto") == 0)
    return log_press(dev, op, SAR_OK);
  if (strcmp(mode, "refuse") == 0) return log_press(dev, op, SAR_USER_CANCEL);
  if (strcmp(mode, "timeout") == 0) {
    sleep_ms(timeout_ms);
    return log_press(dev, op, SAR_TIMEOUTERR);
  }
  if (strcmp(mode, "wait") == 0) {
    unsigned waited = 0;
    char line[80];
    snprintf(line, sizeof line, "%s\n", op);
    write_small(dev, "pending", line, 0);
    for (;;) {
      if (read_small(dev, "press", press, sizeof press) == 0) {
        remove_file(dev, "press");
        remove_file(dev, "pending");
        return log_press(dev, op, (strcmp(press, "cancel") == 0 || strcmp(press, "refuse") == 0) ? SAR_USER_CANCEL : SAR_OK);
      }
      if (!ss_present(dev)) return SAR_DEVICE_REMOVED;
      if (waited >= timeout_ms) {
        remove_file(dev, "pending");
        return log_press(dev, op, SAR_TIMEOUTERR);
      }
      sleep_ms(10);
      waited += 10;
    }
  }
  return log_press(dev, op, SAR_FAIL);
}

/* Runs fn once to check (dry), asks the button with the mutex released, then runs fn for real. */
typedef ULONG (*confirmed_fn)(void *args, int dry, uint32_t *timeout_ms);
static ULONG with_button(const char *op, con_h *c, confirmed_fn fn, void *args) {
  uint32_t timeout_ms = 0;
  char dev[64];
  ULONG r = fn(args, 1, &timeout_ms);
  if (r) return r;
  snprintf(dev, sizeof dev, "%s", c->app->dev->name);
  pthread_mutex_unlock(&mu);
  r = button(dev, op, timeout_ms);
  pthread_mutex_lock(&mu);
  if (r) return r;
  if (!live(c, MAGIC_CON)) return SAR_INVALIDHANDLEERR;
  return fn(args, 0, &timeout_ms);
}

#define LOCKED(body)                \
  do {                              \
    ULONG r_;                       \
    pthread_mutex_lock(&mu);        \
    r_ = (body);                    \
    pthread_mutex_unlock(&mu);      \
    return r_;                      \
  } while (0)

/* ---- 7.1 device management ---- */

static ULONG enum_dev(LPSTR list, ULONG *size) {
  char **names;
  int n;
  ULONG r;
  if (!size) return SAR_INVALIDPARAMERR;
  n = list_devices(&names);
  r = put_names(names, n, list, size);
  free_names(names, n);
  return r;
}
ULONG DEVAPI SKF_EnumDev(BOOL bPresent, LPSTR szNameList, ULONG *pulSize) {
  (void)bPresent;
  LOCKED(enum_dev(szNameList, pulSize));
}

static ULONG connect_dev(LPSTR name, DEVHANDLE *ph) {
  dev_h *d;
  if (!name || !ph) return SAR_INVALIDPARAMERR;
  *ph = NULL;
  if (!ss_valid_name(name) || !ss_present(name)) return SAR_DEVICE_REMOVED;
  d = calloc(1, sizeof *d);
  if (!d) return SAR_MEMORYERR;
  d->magic = MAGIC_DEV;
  snprintf(d->name, sizeof d->name, "%s", name);
  if (reg(d) != 0) {
    free(d);
    return SAR_MEMORYERR;
  }
  *ph = d;
  return SAR_OK;
}
ULONG DEVAPI SKF_ConnectDev(LPSTR szName, DEVHANDLE *phDev) { LOCKED(connect_dev(szName, phDev)); }

static ULONG disconnect_dev(DEVHANDLE h) {
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  close_apps_of(h);
  free_handle(h);
  return SAR_OK;
}
ULONG DEVAPI SKF_DisConnectDev(DEVHANDLE hDev) { LOCKED(disconnect_dev(hDev)); }

static ULONG get_dev_state(LPSTR name, ULONG *state) {
  if (!name || !state) return SAR_INVALIDPARAMERR;
  *state = ss_valid_name(name) && ss_present(name) ? DEV_PRESENT_STATE : DEV_ABSENT_STATE;
  return SAR_OK;
}
ULONG DEVAPI SKF_GetDevState(LPSTR szDevName, ULONG *pulDevState) { LOCKED(get_dev_state(szDevName, pulDevState)); }

static ULONG set_label(DEVHANDLE h, LPSTR label) {
  op_t o;
  ULONG r;
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  if (!label) return SAR_INVALIDPARAMERR;
  if (strlen(label) > 32) return SAR_NAMELENERR;
  r = op_open(&o, ((dev_h *)h)->name);
  if (!r) {
    snprintf(o.dev.label, sizeof o.dev.label, "%s", label);
    r = op_save(&o);
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_SetLabel(DEVHANDLE hDev, LPSTR szLabel) { LOCKED(set_label(hDev, szLabel)); }

static ULONG get_dev_info(DEVHANDLE h, DEVINFO *info) {
  op_t o;
  ULONG r, used;
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  if (!info) return SAR_INVALIDPARAMERR;
  r = op_open(&o, ((dev_h *)h)->name);
  if (!r) {
    memset(info, 0, sizeof *info);
    info->Version.major = 1;
    info->Version.minor = 0;
    copy_field(info->Manufacturer, sizeof info->Manufacturer, o.dev.manufacturer);
    copy_field(info->Issuer, sizeof info->Issuer, o.dev.issuer);
    copy_field(info->Label, sizeof info->Label, o.dev.label);
    copy_field(info->SerialNumber, sizeof info->SerialNumber, o.dev.serial);
    info->HWVersion.major = (BYTE)o.dev.hw_major;
    info->HWVersion.minor = (BYTE)o.dev.hw_minor;
    info->FirmwareVersion.major = (BYTE)o.dev.fw_major;
    info->FirmwareVersion.minor = (BYTE)o.dev.fw_minor;
    info->AlgSymCap = SGD_SM4_ECB | SGD_SM4_CBC;
    info->AlgAsymCap = SGD_RSA | SGD_SM2_1 | SGD_SM2_3;
    info->AlgHashCap = SGD_SM3;
    info->DevAuthAlgId = SGD_SM4_ECB;
    used = ss_used_space(&o.dev);
    info->TotalSpace = o.dev.total_space;
    info->FreeSpace = used >= o.dev.total_space ? 0 : o.dev.total_space - used;
    info->MaxECCBufferSize = MAX_ECC_CIPHER;
    info->MaxBufferSize = 4096;
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_GetDevInfo(DEVHANDLE hDev, DEVINFO *pDevInfo) { LOCKED(get_dev_info(hDev, pDevInfo)); }

static ULONG lock_dev(DEVHANDLE h) { return live(h, MAGIC_DEV) ? SAR_OK : SAR_INVALIDHANDLEERR; }
ULONG DEVAPI SKF_LockDev(DEVHANDLE hDev, ULONG ulTimeOut) {
  (void)ulTimeOut;
  LOCKED(lock_dev(hDev));
}
ULONG DEVAPI SKF_UnlockDev(DEVHANDLE hDev) { LOCKED(lock_dev(hDev)); }

/* Device events: each call reports one change against the set seen by the previous calls. */
static pthread_mutex_t event_mu = PTHREAD_MUTEX_INITIALIZER;
static char **seen;
static int seen_n = -1;
static volatile int cancel_wait;

/* Events are changes after the library was loaded: the set seen starts as the devices present then. */
__attribute__((constructor)) static void init_seen(void) { seen_n = list_devices(&seen); }

static int in_list(char **names, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(names[i], name) == 0) return 1;
  return 0;
}

ULONG DEVAPI SKF_WaitForDevEvent(LPSTR szDevName, ULONG *pulDevNameLen, ULONG *pulEvent) {
  ULONG r = SAR_OK;
  if (!szDevName || !pulDevNameLen || !pulEvent) return SAR_INVALIDPARAMERR;
  pthread_mutex_lock(&event_mu);
  if (seen_n < 0) seen_n = list_devices(&seen);
  cancel_wait = 0;
  for (;;) {
    char **now;
    int n = list_devices(&now);
    const char *changed = NULL;
    ULONG ev = 0;
    for (int i = 0; i < n && !changed; i++)
      if (!in_list(seen, seen_n, now[i])) changed = now[i], ev = DEV_EVENT_INSERTED;
    for (int i = 0; i < seen_n && !changed; i++)
      if (!in_list(now, n, seen[i])) changed = seen[i], ev = DEV_EVENT_REMOVED;
    if (changed) {
      size_t len = strlen(changed) + 1;
      if (*pulDevNameLen < len) {
        *pulDevNameLen = (ULONG)len;
        free_names(now, n);
        r = SAR_BUFFER_TOO_SMALL;
        break;
      }
      memcpy(szDevName, changed, len);
      *pulDevNameLen = (ULONG)len;
      *pulEvent = ev;
      free_names(seen, seen_n);
      seen = now;
      seen_n = n;
      break;
    }
    free_names(now, n);
    if (cancel_wait) {
      r = SAR_NOT_EVENTERR;
      break;
    }
    sleep_ms(50);
  }
  pthread_mutex_unlock(&event_mu);
  return r;
}

ULONG DEVAPI SKF_CancelWaitForDevEvent(void) {
  cancel_wait = 1;
  return SAR_OK;
}

/* ---- 7.2 access control ---- */

static ULONG gen_random(DEVHANDLE h, BYTE *out, ULONG len) {
  dev_h *d = h;
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  if (!out || len == 0) return SAR_INVALIDPARAMERR;
  if (!ss_present(d->name)) return SAR_DEVICE_REMOVED;
  if (ss_random(out, len) != 0) return SAR_GENRANDERR;
  /* The last random is the device-authentication challenge (7.2.3). */
  d->challenge_len = len < 16 ? (int)len : 16;
  memset(d->challenge, 0, sizeof d->challenge);
  memcpy(d->challenge, out, (size_t)d->challenge_len);
  return SAR_OK;
}
ULONG DEVAPI SKF_GenRandom(DEVHANDLE hDev, BYTE *pbRandom, ULONG ulRandomLen) {
  LOCKED(gen_random(hDev, pbRandom, ulRandomLen));
}

static ULONG dev_auth(DEVHANDLE h, BYTE *data, ULONG len) {
  dev_h *d = h;
  op_t o;
  ULONG r;
  unsigned char expect[16];
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  if (!data || len != 16) return SAR_INVALIDPARAMERR;
  if (d->challenge_len == 0) return SAR_FAIL; /* no SKF_GenRandom before */
  r = op_open(&o, d->name);
  if (!r) {
    if (o.dev.devauth_remain == 0) {
      r = SAR_PIN_LOCKED;
    } else if (ss_sm4_ecb(1, o.dev.devauth_key, d->challenge, 16, expect) != 0) {
      r = SAR_FAIL;
    } else if (CRYPTO_memcmp(expect, data, 16) == 0) {
      d->authed = 1;
      o.dev.devauth_remain = o.dev.devauth_max;
      r = op_save(&o);
    } else {
      d->authed = 0;
      o.dev.devauth_remain--;
      r = op_save(&o);
      if (!r) r = o.dev.devauth_remain == 0 ? SAR_PIN_LOCKED : SAR_FAIL;
    }
  }
  d->challenge_len = 0;
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_DevAuth(DEVHANDLE hDev, BYTE *pbAuthData, ULONG ulLen) { LOCKED(dev_auth(hDev, pbAuthData, ulLen)); }

static ULONG change_dev_auth_key(DEVHANDLE h, BYTE *key, ULONG len) {
  dev_h *d = h;
  op_t o;
  ULONG r;
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  if (!key || len != 16) return SAR_INVALIDPARAMERR;
  if (!d->authed) return SAR_USER_NOT_LOGGED_IN;
  r = op_open(&o, d->name);
  if (!r) {
    memcpy(o.dev.devauth_key, key, 16);
    r = op_save(&o);
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_ChangeDevAuthKey(DEVHANDLE hDev, BYTE *pbKeyValue, ULONG ulKeyLen) {
  LOCKED(change_dev_auth_key(hDev, pbKeyValue, ulKeyLen));
}

static int pin_equal(const char *a, const char *b) {
  size_t n = strlen(a);
  return n == strlen(b) && CRYPTO_memcmp(a, b, n) == 0;
}

static int pin_len_ok(const char *pin) {
  size_t n = strlen(pin);
  return n >= MIN_PIN_LEN && n <= MAX_PIN_LEN;
}

/* Checks a PIN against the application's counter; the caller saves the state whatever the result. */
static ULONG check_pin(ss_app *a, ULONG type, const char *pin, ULONG *retry) {
  uint32_t *remain = type == ADMIN_TYPE ? &a->admin_remain : &a->user_remain;
  uint32_t max = type == ADMIN_TYPE ? a->admin_max : a->user_max;
  const char *expect = type == ADMIN_TYPE ? a->admin_pin : a->user_pin;
  if (*remain == 0) {
    if (retry) *retry = 0;
    return SAR_PIN_LOCKED;
  }
  if (pin_equal(pin, expect)) {
    *remain = max;
    if (retry) *retry = max;
    return SAR_OK;
  }
  (*remain)--;
  if (retry) *retry = *remain;
  return *remain == 0 ? SAR_PIN_LOCKED : SAR_PIN_INCORRECT;
}

static ULONG verify_pin(HAPPLICATION h, ULONG type, LPSTR pin, ULONG *retry) {
  app_h *a = h;
  op_t o;
  ULONG r, s;
  if (!live(h, MAGIC_APP)) return SAR_INVALIDHANDLEERR;
  if (!pin || !retry) return SAR_INVALIDPARAMERR;
  if (type != ADMIN_TYPE && type != USER_TYPE) return SAR_USER_TYPE_INVALID;
  r = op_open_app(&o, a);
  if (!r) {
    r = check_pin(o.app, type, pin, retry);
    s = op_save(&o);
    if (r == SAR_OK && s != SAR_OK) r = s;
    if (type == ADMIN_TYPE)
      a->admin = r == SAR_OK;
    else
      a->user = r == SAR_OK;
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_VerifyPIN(HAPPLICATION hApplication, ULONG ulPINType, LPSTR szPIN, ULONG *pulRetryCount) {
  LOCKED(verify_pin(hApplication, ulPINType, szPIN, pulRetryCount));
}

static ULONG change_pin(HAPPLICATION h, ULONG type, LPSTR old, LPSTR neu, ULONG *retry) {
  app_h *a = h;
  op_t o;
  ULONG r, s;
  if (!live(h, MAGIC_APP)) return SAR_INVALIDHANDLEERR;
  if (!old || !neu || !retry) return SAR_INVALIDPARAMERR;
  if (type != ADMIN_TYPE && type != USER_TYPE) return SAR_USER_TYPE_INVALID;
  if (!pin_len_ok(neu)) return SAR_PIN_LEN_RANGE;
  r = op_open_app(&o, a);
  if (!r) {
    r = check_pin(o.app, type, old, retry);
    if (r == SAR_OK) {
      if (type == ADMIN_TYPE) {
        snprintf(o.app->admin_pin, sizeof o.app->admin_pin, "%s", neu);
        o.app->admin_default = 0;
      } else {
        snprintf(o.app->user_pin, sizeof o.app->user_pin, "%s", neu);
        o.app->user_default = 0;
      }
    }
    s = op_save(&o);
    if (r == SAR_OK && s != SAR_OK) r = s;
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_ChangePIN(HAPPLICATION hApplication, ULONG ulPINType, LPSTR szOldPin, LPSTR szNewPin,
                           ULONG *pulRetryCount) {
  LOCKED(change_pin(hApplication, ulPINType, szOldPin, szNewPin, pulRetryCount));
}

static ULONG get_pin_info(HAPPLICATION h, ULONG type, ULONG *max, ULONG *remain, BOOL *dflt) {
  op_t o;
  ULONG r;
  if (!live(h, MAGIC_APP)) return SAR_INVALIDHANDLEERR;
  if (!max || !remain || !dflt) return SAR_INVALIDPARAMERR;
  if (type != ADMIN_TYPE && type != USER_TYPE) return SAR_USER_TYPE_INVALID;
  r = op_open_app(&o, h);
  if (!r) {
    *max = type == ADMIN_TYPE ? o.app->admin_max : o.app->user_max;
    *remain = type == ADMIN_TYPE ? o.app->admin_remain : o.app->user_remain;
    *dflt = (type == ADMIN_TYPE ? o.app->admin_default : o.app->user_default) ? TRUE : FALSE;
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_GetPINInfo(HAPPLICATION hApplication, ULONG ulPINType, ULONG *pulMaxRetryCount,
                            ULONG *pulRemainRetryCount, BOOL *pbDefaultPin) {
  LOCKED(get_pin_info(hApplication, ulPINType, pulMaxRetryCount, pulRemainRetryCount, pbDefaultPin));
}

static ULONG unblock_pin(HAPPLICATION h, LPSTR admin, LPSTR user, ULONG *retry) {
  app_h *a = h;
  op_t o;
  ULONG r, s;
  if (!live(h, MAGIC_APP)) return SAR_INVALIDHANDLEERR;
  if (!admin || !user || !retry) return SAR_INVALIDPARAMERR;
  if (!pin_len_ok(user)) return SAR_PIN_LEN_RANGE;
  r = op_open_app(&o, a);
  if (!r) {
    r = check_pin(o.app, ADMIN_TYPE, admin, retry);
    if (r == SAR_OK) {
      snprintf(o.app->user_pin, sizeof o.app->user_pin, "%s", user);
      o.app->user_remain = o.app->user_max;
      o.app->user_default = 0;
    }
    s = op_save(&o);
    if (r == SAR_OK && s != SAR_OK) r = s;
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_UnblockPIN(HAPPLICATION hApplication, LPSTR szAdminPIN, LPSTR szNewUserPIN, ULONG *pulRetryCount) {
  LOCKED(unblock_pin(hApplication, szAdminPIN, szNewUserPIN, pulRetryCount));
}

static ULONG clear_secure_state(HAPPLICATION h) {
  app_h *a = h;
  if (!live(h, MAGIC_APP)) return SAR_INVALIDHANDLEERR;
  a->user = a->admin = 0;
  return SAR_OK;
}
ULONG DEVAPI SKF_ClearSecureState(HAPPLICATION hApplication) { LOCKED(clear_secure_state(hApplication)); }

/* ---- 7.3 applications ---- */

static ULONG new_app_handle(dev_h *d, const char *name, HAPPLICATION *ph) {
  app_h *a = calloc(1, sizeof *a);
  if (!a) return SAR_MEMORYERR;
  a->magic = MAGIC_APP;
  a->dev = d;
  snprintf(a->name, sizeof a->name, "%s", name);
  if (reg(a) != 0) {
    free(a);
    return SAR_MEMORYERR;
  }
  *ph = a;
  return SAR_OK;
}

static ULONG create_app(DEVHANDLE h, LPSTR name, LPSTR admin, DWORD admin_retry, LPSTR user, DWORD user_retry,
                        DWORD rights, HAPPLICATION *ph) {
  dev_h *d = h;
  op_t o;
  ULONG r;
  ss_app *a;
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  if (!name || !admin || !user || !ph) return SAR_INVALIDPARAMERR;
  *ph = NULL;
  if (strlen(name) == 0 || strlen(name) > MAX_APPNAME_LEN) return SAR_NAMELENERR;
  if (!pin_len_ok(admin) || !pin_len_ok(user)) return SAR_PIN_LEN_RANGE;
  if (admin_retry < 1 || admin_retry > 15 || user_retry < 1 || user_retry > 15) return SAR_INVALIDPARAMERR;
  if (!d->authed) return SAR_USER_NOT_LOGGED_IN;
  r = op_open(&o, d->name);
  if (!r && ss_find_app(&o.dev, name)) r = SAR_APPLICATION_EXISTS;
  if (!r && !fits(&o.dev, SK_APP_OVERHEAD)) r = SAR_NO_ROOM;
  if (!r) {
    a = ss_add_app(&o.dev);
    if (!a) {
      r = SAR_MEMORYERR;
    } else {
      snprintf(a->name, sizeof a->name, "%s", name);
      snprintf(a->admin_pin, sizeof a->admin_pin, "%s", admin);
      snprintf(a->user_pin, sizeof a->user_pin, "%s", user);
      a->admin_max = a->admin_remain = admin_retry;
      a->user_max = a->user_remain = user_retry;
      a->create_rights = rights;
      r = op_save(&o);
    }
  }
  op_close(&o);
  if (!r) r = new_app_handle(d, name, ph);
  return r;
}
ULONG DEVAPI SKF_CreateApplication(DEVHANDLE hDev, LPSTR szAppName, LPSTR szAdminPin, DWORD dwAdminPinRetryCount,
                                   LPSTR szUserPin, DWORD dwUserPinRetryCount, DWORD dwCreateFileRights,
                                   HAPPLICATION *phApplication) {
  LOCKED(create_app(hDev, szAppName, szAdminPin, dwAdminPinRetryCount, szUserPin, dwUserPinRetryCount,
                    dwCreateFileRights, phApplication));
}

static ULONG enum_app(DEVHANDLE h, LPSTR list, ULONG *size) {
  op_t o;
  ULONG r;
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  if (!size) return SAR_INVALIDPARAMERR;
  r = op_open(&o, ((dev_h *)h)->name);
  if (!r) {
    char *names[64];
    int n = 0;
    for (ss_app *a = o.dev.apps; a && n < 64; a = a->next) names[n++] = a->name;
    r = put_names(names, n, list, size);
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_EnumApplication(DEVHANDLE hDev, LPSTR szAppName, ULONG *pulSize) {
  LOCKED(enum_app(hDev, szAppName, pulSize));
}

static ULONG delete_app(DEVHANDLE h, LPSTR name) {
  dev_h *d = h;
  op_t o;
  ULONG r;
  ss_app *a;
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  if (!name) return SAR_INVALIDPARAMERR;
  if (!d->authed) return SAR_USER_NOT_LOGGED_IN;
  r = op_open(&o, d->name);
  if (!r) {
    a = ss_find_app(&o.dev, name);
    if (!a) {
      r = SAR_APPLICATION_NOT_EXISTS;
    } else {
      ss_remove_app(&o.dev, a);
      r = op_save(&o);
    }
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_DeleteApplication(DEVHANDLE hDev, LPSTR szAppName) { LOCKED(delete_app(hDev, szAppName)); }

static ULONG open_app(DEVHANDLE h, LPSTR name, HAPPLICATION *ph) {
  op_t o;
  ULONG r;
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  if (!name || !ph) return SAR_INVALIDPARAMERR;
  *ph = NULL;
  r = op_open(&o, ((dev_h *)h)->name);
  if (!r && !ss_find_app(&o.dev, name)) r = SAR_APPLICATION_NOT_EXISTS;
  op_close(&o);
  if (!r) r = new_app_handle(h, name, ph);
  return r;
}
ULONG DEVAPI SKF_OpenApplication(DEVHANDLE hDev, LPSTR szAppName, HAPPLICATION *phApplication) {
  LOCKED(open_app(hDev, szAppName, phApplication));
}

static ULONG close_app(HAPPLICATION h) {
  if (!live(h, MAGIC_APP)) return SAR_INVALIDHANDLEERR;
  close_containers_of(h);
  free_handle(h);
  return SAR_OK;
}
ULONG DEVAPI SKF_CloseApplication(HAPPLICATION hApplication) { LOCKED(close_app(hApplication)); }

/* ---- 7.5 containers ---- */

static ULONG new_con_handle(app_h *a, const char *name, HCONTAINER *ph) {
  con_h *c = calloc(1, sizeof *c);
  if (!c) return SAR_MEMORYERR;
  c->magic = MAGIC_CON;
  c->app = a;
  snprintf(c->name, sizeof c->name, "%s", name);
  if (reg(c) != 0) {
    free(c);
    return SAR_MEMORYERR;
  }
  *ph = c;
  return SAR_OK;
}

static ULONG create_con(HAPPLICATION h, LPSTR name, HCONTAINER *ph) {
  app_h *a = h;
  op_t o;
  ULONG r;
  int count = 0;
  ss_container *c;
  if (!live(h, MAGIC_APP)) return SAR_INVALIDHANDLEERR;
  if (!name || !ph) return SAR_INVALIDPARAMERR;
  *ph = NULL;
  if (strlen(name) == 0 || strlen(name) > MAX_CNTNAME_LEN) return SAR_NAMELENERR;
  if (!a->user) return SAR_USER_NOT_LOGGED_IN;
  r = op_open_app(&o, a);
  if (!r && ss_find_container(o.app, name)) r = SAR_FILE_ALREADY_EXIST;
  if (!r) {
    for (c = o.app->containers; c; c = c->next) count++;
    if ((uint32_t)count >= o.dev.max_containers) r = SAR_REACH_MAX_CONTAINER_COUNT;
  }
  if (!r && !fits(&o.dev, SK_CONTAINER_OVERHEAD)) r = SAR_NO_ROOM;
  if (!r) {
    c = ss_add_container(o.app);
    if (!c) {
      r = SAR_MEMORYERR;
    } else {
      snprintf(c->name, sizeof c->name, "%s", name);
      c->type = CONTAINER_TYPE_EMPTY;
      r = op_save(&o);
    }
  }
  op_close(&o);
  if (!r) r = new_con_handle(a, name, ph);
  return r;
}
ULONG DEVAPI SKF_CreateContainer(HAPPLICATION hApplication, LPSTR szContainerName, HCONTAINER *phContainer) {
  LOCKED(create_con(hApplication, szContainerName, phContainer));
}

static ULONG delete_con(HAPPLICATION h, LPSTR name) {
  app_h *a = h;
  op_t o;
  ULONG r;
  ss_container *c;
  if (!live(h, MAGIC_APP)) return SAR_INVALIDHANDLEERR;
  if (!name) return SAR_INVALIDPARAMERR;
  if (!a->user) return SAR_USER_NOT_LOGGED_IN;
  r = op_open_app(&o, a);
  if (!r) {
    c = ss_find_container(o.app, name);
    if (!c) {
      r = SAR_FILE_NOT_EXIST;
    } else {
      ss_remove_container(o.app, c);
      r = op_save(&o);
    }
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_DeleteContainer(HAPPLICATION hApplication, LPSTR szContainerName) {
  LOCKED(delete_con(hApplication, szContainerName));
}

static ULONG open_con(HAPPLICATION h, LPSTR name, HCONTAINER *ph) {
  op_t o;
  ULONG r;
  if (!live(h, MAGIC_APP)) return SAR_INVALIDHANDLEERR;
  if (!name || !ph) return SAR_INVALIDPARAMERR;
  *ph = NULL;
  r = op_open_app(&o, h);
  if (!r && !ss_find_container(o.app, name)) r = SAR_FILE_NOT_EXIST;
  op_close(&o);
  if (!r) r = new_con_handle(h, name, ph);
  return r;
}
ULONG DEVAPI SKF_OpenContainer(HAPPLICATION hApplication, LPSTR szContainerName, HCONTAINER *phContainer) {
  LOCKED(open_con(hApplication, szContainerName, phContainer));
}

static ULONG close_con(HCONTAINER h) {
  if (!live(h, MAGIC_CON)) return SAR_INVALIDHANDLEERR;
  free_handle(h);
  return SAR_OK;
}
ULONG DEVAPI SKF_CloseContainer(HCONTAINER hContainer) { LOCKED(close_con(hContainer)); }

static ULONG enum_con(HAPPLICATION h, LPSTR list, ULONG *size) {
  op_t o;
  ULONG r;
  if (!live(h, MAGIC_APP)) return SAR_INVALIDHANDLEERR;
  if (!size) return SAR_INVALIDPARAMERR;
  r = op_open_app(&o, h);
  if (!r) {
    char *names[256];
    int n = 0;
    for (ss_container *c = o.app->containers; c && n < 256; c = c->next) names[n++] = c->name;
    r = put_names(names, n, list, size);
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_EnumContainer(HAPPLICATION hApplication, LPSTR szContainerName, ULONG *pulSize) {
  LOCKED(enum_con(hApplication, szContainerName, pulSize));
}

static ULONG get_con_type(HCONTAINER h, ULONG *type) {
  op_t o;
  ULONG r;
  if (!live(h, MAGIC_CON)) return SAR_INVALIDHANDLEERR;
  if (!type) return SAR_INVALIDPARAMERR;
  r = op_open_con(&o, h);
  if (!r) *type = o.con->type;
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_GetContainerType(HCONTAINER hContainer, ULONG *pulContainerType) {
  LOCKED(get_con_type(hContainer, pulContainerType));
}

static ULONG import_cert(HCONTAINER h, BOOL sign, BYTE *cert, ULONG len) {
  con_h *c = h;
  op_t o;
  ULONG r;
  ss_buf *slot;
  if (!live(h, MAGIC_CON)) return SAR_INVALIDHANDLEERR;
  if (!cert || len == 0 || len > 0x10000) return SAR_INVALIDPARAMERR;
  if (!c->app->user) return SAR_USER_NOT_LOGGED_IN;
  r = op_open_con(&o, c);
  if (!r) {
    slot = sign ? &o.con->sign_cert : &o.con->enc_cert;
    if (!fits(&o.dev, len > slot->n ? len - slot->n : 0))
      r = SAR_NO_ROOM;
    else if (ss_buf_set(slot, cert, len) != 0)
      r = SAR_MEMORYERR;
    else
      r = op_save(&o);
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_ImportCertificate(HCONTAINER hContainer, BOOL bSignFlag, BYTE *pbCert, ULONG ulCertLen) {
  LOCKED(import_cert(hContainer, bSignFlag, pbCert, ulCertLen));
}

static ULONG export_cert(HCONTAINER h, BOOL sign, BYTE *out, ULONG *len) {
  op_t o;
  ULONG r;
  ss_buf *slot;
  if (!live(h, MAGIC_CON)) return SAR_INVALIDHANDLEERR;
  if (!len) return SAR_INVALIDPARAMERR;
  r = op_open_con(&o, h);
  if (!r) {
    slot = sign ? &o.con->sign_cert : &o.con->enc_cert;
    if (slot->n == 0) {
      r = SAR_CERTNOTFOUNTERR;
    } else if (!out) {
      *len = (ULONG)slot->n;
    } else if (*len < slot->n) {
      *len = (ULONG)slot->n;
      r = SAR_BUFFER_TOO_SMALL;
    } else {
      memcpy(out, slot->p, slot->n);
      *len = (ULONG)slot->n;
    }
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_ExportCertificate(HCONTAINER hContainer, BOOL bSignFlag, BYTE *pbCert, ULONG *pulCertLen) {
  LOCKED(export_cert(hContainer, bSignFlag, pbCert, pulCertLen));
}

/* ---- 7.6 cryptographic services ---- */

static void ecc_blob_from(const unsigned char pub[65], ECCPUBLICKEYBLOB *blob) {
  memset(blob, 0, sizeof *blob);
  blob->BitLen = 256;
  memcpy(blob->XCoordinate + 32, pub + 1, 32);
  memcpy(blob->YCoordinate + 32, pub + 33, 32);
}

/* 04||x||y from a blob; -1 unless BitLen is 256 and the high halves are zero. */
static int pub_from_blob(const ECCPUBLICKEYBLOB *blob, unsigned char pub[65]) {
  static const unsigned char zero[32];
  if (blob->BitLen != 256 || memcmp(blob->XCoordinate, zero, 32) || memcmp(blob->YCoordinate, zero, 32)) return -1;
  pub[0] = 4;
  memcpy(pub + 1, blob->XCoordinate + 32, 32);
  memcpy(pub + 33, blob->YCoordinate + 32, 32);
  return 0;
}

typedef struct {
  con_h *c;
  ULONG alg;
  ECCPUBLICKEYBLOB *blob;
} gen_ecc_args;

static ULONG gen_ecc(void *p, int dry, uint32_t *timeout_ms) {
  gen_ecc_args *a = p;
  op_t o;
  ULONG r;
  unsigned char d[32], pub[65];
  r = op_open_con(&o, a->c);
  if (!r && o.con->type == CONTAINER_TYPE_RSA) r = SAR_KEYUSAGEERR;
  if (!r && !fits(&o.dev, o.con->sign_priv.n ? 0 : 32 + 65)) r = SAR_NO_ROOM;
  *timeout_ms = o.loaded ? o.dev.button_timeout_ms : 0;
  if (!r && !dry) {
    if (ss_sm2_keygen(d, pub) != 0) {
      r = SAR_FAIL;
    } else if (ss_buf_set(&o.con->sign_priv, d, 32) || ss_buf_set(&o.con->sign_pub, pub, 65)) {
      r = SAR_MEMORYERR;
    } else {
      o.con->type = CONTAINER_TYPE_ECC;
      r = op_save(&o);
      if (!r) ecc_blob_from(pub, a->blob);
    }
    OPENSSL_cleanse(d, sizeof d);
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_GenECCKeyPair(HCONTAINER hContainer, ULONG ulAlgId, ECCPUBLICKEYBLOB *pBlob) {
  gen_ecc_args a = {hContainer, ulAlgId, pBlob};
  ULONG r;
  pthread_mutex_lock(&mu);
  if (!live(hContainer, MAGIC_CON))
    r = SAR_INVALIDHANDLEERR;
  else if (!pBlob)
    r = SAR_INVALIDPARAMERR;
  else if (ulAlgId != SGD_SM2_1)
    r = SAR_NOTSUPPORTYETERR;
  else if (!a.c->app->user)
    r = SAR_USER_NOT_LOGGED_IN;
  else
    r = with_button("GenECCKeyPair", a.c, gen_ecc, &a);
  pthread_mutex_unlock(&mu);
  return r;
}

typedef struct {
  con_h *c;
  const BYTE *digest;
  ECCSIGNATUREBLOB *sig;
} ecc_sign_args;

static ULONG ecc_sign(void *p, int dry, uint32_t *timeout_ms) {
  ecc_sign_args *a = p;
  op_t o;
  ULONG r;
  unsigned char rr[32], ss[32];
  r = op_open_con(&o, a->c);
  if (!r && (o.con->type != CONTAINER_TYPE_ECC || o.con->sign_priv.n != 32 || o.con->sign_pub.n != 65))
    r = SAR_KEYNOTFOUNTERR;
  *timeout_ms = o.loaded ? o.dev.button_timeout_ms : 0;
  if (!r && !dry) {
    if (ss_sm2_sign_digest(o.con->sign_priv.p, o.con->sign_pub.p, a->digest, rr, ss) != 0) {
      r = SAR_FAIL;
    } else {
      memset(a->sig, 0, sizeof *a->sig);
      memcpy(a->sig->r + 32, rr, 32);
      memcpy(a->sig->s + 32, ss, 32);
    }
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_ECCSignData(HCONTAINER hContainer, BYTE *pbDigest, ULONG ulDigestLen, ECCSIGNATUREBLOB *pSignature) {
  ecc_sign_args a = {hContainer, pbDigest, pSignature};
  ULONG r;
  pthread_mutex_lock(&mu);
  if (!live(hContainer, MAGIC_CON))
    r = SAR_INVALIDHANDLEERR;
  else if (!pbDigest || !pSignature)
    r = SAR_INVALIDPARAMERR;
  else if (ulDigestLen != 32)
    r = SAR_INDATALENERR;
  else if (!a.c->app->user)
    r = SAR_USER_NOT_LOGGED_IN;
  else
    r = with_button("ECCSignData", a.c, ecc_sign, &a);
  pthread_mutex_unlock(&mu);
  return r;
}

static ULONG ext_ecc_verify(DEVHANDLE h, ECCPUBLICKEYBLOB *blob, BYTE *data, ULONG len, ECCSIGNATUREBLOB *sig) {
  static const unsigned char zero[32];
  unsigned char pub[65];
  int v;
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  if (!blob || !data || !sig) return SAR_INVALIDPARAMERR;
  if (len != 32) return SAR_INDATALENERR;
  if (!ss_present(((dev_h *)h)->name)) return SAR_DEVICE_REMOVED;
  if (pub_from_blob(blob, pub) != 0 || ss_sm2_check_point(pub) != 0) return SAR_INVALIDPARAMERR;
  if (memcmp(sig->r, zero, 32) || memcmp(sig->s, zero, 32)) return SAR_FAIL;
  v = ss_sm2_verify_digest(pub, data, sig->r + 32, sig->s + 32);
  return v == 0 ? SAR_OK : SAR_FAIL;
}
ULONG DEVAPI SKF_ExtECCVerify(DEVHANDLE hDev, ECCPUBLICKEYBLOB *pECCPubKeyBlob, BYTE *pbData, ULONG ulDataLen,
                              ECCSIGNATUREBLOB *pSignature) {
  LOCKED(ext_ecc_verify(hDev, pECCPubKeyBlob, pbData, ulDataLen, pSignature));
}
ULONG DEVAPI SKF_ECCVerify(DEVHANDLE hDev, ECCPUBLICKEYBLOB *pECCPubKeyBlob, BYTE *pbData, ULONG ulDataLen,
                           ECCSIGNATUREBLOB *pSignature) {
  LOCKED(ext_ecc_verify(hDev, pECCPubKeyBlob, pbData, ulDataLen, pSignature));
}

static ULONG export_pub(HCONTAINER h, BOOL sign, BYTE *out, ULONG *len) {
  op_t o;
  ULONG r, need = 0;
  ss_buf *pub;
  if (!live(h, MAGIC_CON)) return SAR_INVALIDHANDLEERR;
  if (!len) return SAR_INVALIDPARAMERR;
  r = op_open_con(&o, h);
  if (!r) {
    pub = sign ? &o.con->sign_pub : &o.con->enc_pub;
    if (o.con->type == CONTAINER_TYPE_ECC && pub->n == 65)
      need = ECC_BLOB_SIZE;
    else if (o.con->type == CONTAINER_TYPE_RSA && sign && pub->n == 260)
      need = RSA_BLOB_SIZE;
    else
      r = SAR_KEYNOTFOUNTERR;
  }
  if (!r && !out) {
    *len = need;
  } else if (!r && *len < need) {
    *len = need;
    r = SAR_BUFFER_TOO_SMALL;
  } else if (!r && need == ECC_BLOB_SIZE) {
    ECCPUBLICKEYBLOB blob;
    ecc_blob_from(pub->p, &blob);
    memcpy(out, &blob, sizeof blob);
    *len = need;
  } else if (!r) {
    RSAPUBLICKEYBLOB blob;
    int lead = 0;
    memset(&blob, 0, sizeof blob);
    blob.AlgID = SGD_RSA;
    memcpy(blob.Modulus, pub->p, 256);
    memcpy(blob.PublicExponent, pub->p + 256, 4);
    while (lead < 256 && blob.Modulus[lead] == 0) lead++;
    blob.BitLen = (ULONG)(256 - lead) * 8;
    memcpy(out, &blob, sizeof blob);
    *len = need;
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_ExportPublicKey(HCONTAINER hContainer, BOOL bSignFlag, BYTE *pbBlob, ULONG *pulBlobLen) {
  LOCKED(export_pub(hContainer, bSignFlag, pbBlob, pulBlobLen));
}

typedef struct {
  con_h *c;
  const ENVELOPEDKEYBLOB *env;
} import_ecc_args;

static const unsigned char zero32[32];

/* 6.4.11: the encryption key pair, its private key SM4-ECB encrypted under a session key that is SM2-encrypted to
 * the container's signing key (docs/envelopes.md). */
__attribute__((unused)) static ULONG import_ecc(void *p, int dry, uint32_t *timeout_ms) {
  import_ecc_args *a = p;
  const ENVELOPEDKEYBLOB *env = a->env;
  const ECCCIPHERBLOB *cb = &env->ECCCipherBlob;
  op_t o;
  ULONG r;
  unsigned char pub[65], derived[65], k[16], d[32];
  r = op_open_con(&o, a->c);
  if (!r && (o.con->type != CONTAINER_TYPE_ECC || o.con->sign_priv.n != 32)) r = SAR_KEYNOTFOUNTERR;
  if (!r && !fits(&o.dev, (o.con->enc_priv.n ? 0 : 32 + 65))) r = SAR_NO_ROOM;
  /* The half of cbEncryptedPriKey this key does not read must be zero. */
  if (!r && memcmp(a->env->cbEncryptedPriKey + (o.dev.envelope_left ? 32 : 0), zero32, 32) != 0) r = SAR_INDATAERR;
  *timeout_ms = o.loaded ? o.dev.button_timeout_ms : 0;
  if (!r && !dry) {
    if (ss_sm2_decrypt(o.con->sign_priv.p, o.con->sign_pub.p, cb->XCoordinate + 32, cb->YCoordinate + 32, cb->HASH,
                       cb->Cipher, 16, k) != 0)
      r = SAR_INDATAERR; /* not enveloped for this container's signing key */
    else if (ss_sm4_ecb(0, k, env->cbEncryptedPriKey + (o.dev.envelope_left ? 0 : 32), 32, d) != 0 ||
             ss_sm2_pub_from_priv(d, derived) != 0)
      r = SAR_INDATAERR;
    else if (pub_from_blob(&env->PubKey, pub) != 0 || memcmp(pub, derived, 65) != 0)
      r = SAR_INDATAERR; /* the key does not match the public key it comes with */
    else if (ss_buf_set(&o.con->enc_priv, d, 32) || ss_buf_set(&o.con->enc_pub, pub, 65))
      r = SAR_MEMORYERR;
    else
      r = op_save(&o);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(d, sizeof d);
  }
  op_close(&o);
  return r;
}
/* Built without it (-DSKF_SOFTKEY_WITHOUT_ECC_IMPORT): a library that lacks a function the agent needs. */
#ifndef SKF_SOFTKEY_WITHOUT_ECC_IMPORT
ULONG DEVAPI SKF_ImportECCKeyPair(HCONTAINER hContainer, ENVELOPEDKEYBLOB *pEnvelopedKeyBlob) {
  static const unsigned char zero[32];
  import_ecc_args a = {hContainer, pEnvelopedKeyBlob};
  const ENVELOPEDKEYBLOB *e = pEnvelopedKeyBlob;
  ULONG r;
  pthread_mutex_lock(&mu);
  if (!live(hContainer, MAGIC_CON))
    r = SAR_INVALIDHANDLEERR;
  else if (!e)
    r = SAR_INVALIDPARAMERR;
  else if (e->Version != 1 || e->ulSymmAlgID != SGD_SM4_ECB || e->ulBits != 256 || e->ECCCipherBlob.CipherLen != 16 ||
           memcmp(e->ECCCipherBlob.XCoordinate, zero, 32) ||
           memcmp(e->ECCCipherBlob.YCoordinate, zero, 32))
    r = SAR_INDATAERR;
  else if (!a.c->app->user)
    r = SAR_USER_NOT_LOGGED_IN;
  else
    r = with_button("ImportECCKeyPair", a.c, import_ecc, &a);
  pthread_mutex_unlock(&mu);
  return r;
}
#endif

/* Decryption with the container's encryption key (a vendor extension GmSSL and most vendors' libraries carry). */
static ULONG ecc_decrypt(HCONTAINER h, ECCCIPHERBLOB *cb, BYTE *out, ULONG *len) {
  static const unsigned char zero[32];
  con_h *c = h;
  op_t o;
  ULONG r;
  if (!live(h, MAGIC_CON)) return SAR_INVALIDHANDLEERR;
  if (!cb || !len) return SAR_INVALIDPARAMERR;
  if (cb->CipherLen == 0 || cb->CipherLen > MAX_ECC_CIPHER) return SAR_INDATALENERR;
  if (memcmp(cb->XCoordinate, zero, 32) || memcmp(cb->YCoordinate, zero, 32)) return SAR_INDATAERR;
  if (!c->app->user) return SAR_USER_NOT_LOGGED_IN;
  if (!out) {
    *len = cb->CipherLen;
    return SAR_OK;
  }
  if (*len < cb->CipherLen) {
    *len = cb->CipherLen;
    return SAR_BUFFER_TOO_SMALL;
  }
  r = op_open_con(&o, c);
  if (!r && o.con->enc_priv.n != 32) r = SAR_KEYNOTFOUNTERR;
  if (!r && ss_sm2_decrypt(o.con->enc_priv.p, o.con->enc_pub.p, cb->XCoordinate + 32, cb->YCoordinate + 32, cb->HASH,
                           cb->Cipher, cb->CipherLen, out) != 0)
    r = SAR_INDATAERR;
  if (!r) *len = cb->CipherLen;
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_ECCDecrypt(HCONTAINER hContainer, ECCCIPHERBLOB *pCipherText, BYTE *pbPlainText,
                            ULONG *pulPlainTextLen) {
  LOCKED(ecc_decrypt(hContainer, pCipherText, pbPlainText, pulPlainTextLen));
}

typedef struct {
  con_h *c;
  ULONG bits;
  RSAPUBLICKEYBLOB *blob;
} gen_rsa_args;

static ULONG gen_rsa(void *p, int dry, uint32_t *timeout_ms) {
  gen_rsa_args *a = p;
  op_t o;
  ULONG r;
  unsigned char *der = NULL, pub[260];
  size_t derlen = 0;
  r = op_open_con(&o, a->c);
  if (!r && o.con->type == CONTAINER_TYPE_ECC) r = SAR_KEYUSAGEERR;
  if (!r && !fits(&o.dev, o.con->sign_priv.n ? 0 : 1200 + 260)) r = SAR_NO_ROOM;
  *timeout_ms = o.loaded ? o.dev.button_timeout_ms : 0;
  if (!r && !dry) {
    if (ss_rsa_keygen(a->bits, &der, &derlen, pub, pub + 256) != 0) {
      r = SAR_GENRSAKEYERR;
    } else if (ss_buf_set(&o.con->sign_priv, der, derlen) || ss_buf_set(&o.con->sign_pub, pub, 260)) {
      r = SAR_MEMORYERR;
    } else {
      o.con->type = CONTAINER_TYPE_RSA;
      r = op_save(&o);
      if (!r) {
        memset(a->blob, 0, sizeof *a->blob);
        a->blob->AlgID = SGD_RSA;
        a->blob->BitLen = a->bits;
        memcpy(a->blob->Modulus, pub, 256);
        memcpy(a->blob->PublicExponent, pub + 256, 4);
      }
    }
    if (der) OPENSSL_clear_free(der, derlen);
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_GenRSAKeyPair(HCONTAINER hContainer, ULONG ulBitsLen, RSAPUBLICKEYBLOB *pBlob) {
  gen_rsa_args a = {hContainer, ulBitsLen, pBlob};
  ULONG r;
  pthread_mutex_lock(&mu);
  if (!live(hContainer, MAGIC_CON))
    r = SAR_INVALIDHANDLEERR;
  else if (!pBlob)
    r = SAR_INVALIDPARAMERR;
  else if (ulBitsLen != 1024 && ulBitsLen != 2048)
    r = SAR_MODULUSLENERR;
  else if (!a.c->app->user)
    r = SAR_USER_NOT_LOGGED_IN;
  else
    r = with_button("GenRSAKeyPair", a.c, gen_rsa, &a);
  pthread_mutex_unlock(&mu);
  return r;
}

typedef struct {
  con_h *c;
  const BYTE *data;
  ULONG len;
  BYTE *sig;
  ULONG *siglen;
} rsa_sign_args;

static ULONG rsa_sign(void *p, int dry, uint32_t *timeout_ms) {
  rsa_sign_args *a = p;
  op_t o;
  ULONG r, modlen = 0;
  size_t out = 0;
  int lead = 0;
  r = op_open_con(&o, a->c);
  if (!r && (o.con->type != CONTAINER_TYPE_RSA || o.con->sign_pub.n != 260)) r = SAR_KEYNOTFOUNTERR;
  if (!r) {
    while (lead < 256 && o.con->sign_pub.p[lead] == 0) lead++;
    modlen = (ULONG)(256 - lead);
    if (a->len > modlen - 11) r = SAR_INDATALENERR;
  }
  *timeout_ms = o.loaded ? o.dev.button_timeout_ms : 0;
  if (!r && dry && a->sig && *a->siglen < modlen) {
    *a->siglen = modlen;
    r = SAR_BUFFER_TOO_SMALL;
  }
  if (!r && !dry) {
    out = modlen;
    if (ss_rsa_sign(o.con->sign_priv.p, o.con->sign_priv.n, a->data, a->len, a->sig, &out) != 0)
      r = SAR_FAIL;
    else
      *a->siglen = (ULONG)out;
  }
  op_close(&o);
  return r;
}
ULONG DEVAPI SKF_RSASignData(HCONTAINER hContainer, BYTE *pbData, ULONG ulDataLen, BYTE *pbSignature,
                             ULONG *pulSignLen) {
  rsa_sign_args a = {hContainer, pbData, ulDataLen, pbSignature, pulSignLen};
  ULONG r;
  pthread_mutex_lock(&mu);
  if (!live(hContainer, MAGIC_CON))
    r = SAR_INVALIDHANDLEERR;
  else if (!pbData || !pulSignLen || ulDataLen == 0)
    r = SAR_INVALIDPARAMERR;
  else if (!a.c->app->user)
    r = SAR_USER_NOT_LOGGED_IN;
  else if (!pbSignature) {
    op_t o;
    r = op_open_con(&o, a.c);
    if (!r && (o.con->type != CONTAINER_TYPE_RSA || o.con->sign_pub.n != 260)) r = SAR_KEYNOTFOUNTERR;
    if (!r) {
      int lead = 0;
      while (lead < 256 && o.con->sign_pub.p[lead] == 0) lead++;
      *pulSignLen = (ULONG)(256 - lead);
    }
    op_close(&o);
  } else
    r = with_button("RSASignData", a.c, rsa_sign, &a);
  pthread_mutex_unlock(&mu);
  return r;
}

static ULONG rsa_verify(DEVHANDLE h, RSAPUBLICKEYBLOB *blob, BYTE *data, ULONG len, BYTE *sig, ULONG siglen) {
  ULONG modlen;
  if (!live(h, MAGIC_DEV)) return SAR_INVALIDHANDLEERR;
  if (!blob || !data || !sig) return SAR_INVALIDPARAMERR;
  if (blob->BitLen != 1024 && blob->BitLen != 2048) return SAR_MODULUSLENERR;
  modlen = blob->BitLen / 8;
  if (siglen != modlen) return SAR_INDATALENERR;
  return ss_rsa_verify(blob->Modulus + 256 - modlen, modlen, blob->PublicExponent, data, len, sig, siglen) == 0
             ? SAR_OK
             : SAR_FAIL;
}
ULONG DEVAPI SKF_RSAVerify(DEVHANDLE hDev, RSAPUBLICKEYBLOB *pRSAPubKeyBlob, BYTE *pbData, ULONG ulDataLen,
                           BYTE *pbSignature, ULONG ulSignLen) {
  LOCKED(rsa_verify(hDev, pRSAPubKeyBlob, pbData, ulDataLen, pbSignature, ulSignLen));
}

static ULONG close_handle(HANDLE h) {
  if (live(h, MAGIC_CON)) return close_con(h);
  if (live(h, MAGIC_APP)) return close_app(h);
  if (live(h, MAGIC_DEV)) return disconnect_dev(h);
  return SAR_INVALIDHANDLEERR;
}
ULONG DEVAPI SKF_CloseHandle(HANDLE hHandle) { LOCKED(close_handle(hHandle)); }
