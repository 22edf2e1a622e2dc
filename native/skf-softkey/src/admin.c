/*
 * skf-softkey-admin: makes, shows, unplugs and removes software SKF keys in
 * $SKF_SOFTKEY_DIR, and works their button. Usage: skf-softkey-admin help.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "skf.h"
#include "crypto.h"
#include "state.h"

static const char *usage =
    "usage: skf-softkey-admin COMMAND NAME [OPTIONS]   (devices live in $SKF_SOFTKEY_DIR/NAME)\n"
    "  create NAME [--label L] [--serial S] [--manufacturer M] [--issuer I] [--hw-version 3.0] [--fw-version 1.0]\n"
    "              [--app APP | --no-app] [--user-pin P] [--admin-pin P] [--user-retries N] [--admin-retries N]\n"
    "              [--storage OCTETS] [--max-containers N] [--button-timeout-ms N] [--dev-auth-key HEX32]\n"
    "              [--dev-auth-retries N] [--envelope-layout right|left]\n"
    "  show NAME          the device as JSON (apps, PIN counters, containers and what they hold, space)\n"
    "  remove NAME        deletes the device and its state\n"
    "  unplug NAME        hides the device, state kept (SKF_EnumDev no longer lists it)\n"
    "  plug NAME          shows an unplugged device again\n"
    "  button NAME MODE   auto | refuse | timeout | wait\n"
    "  press NAME [ok|cancel]  answers a waiting confirmation (button mode wait)\n"
    "  gen-key NAME APP CONTAINER     test fixture: an SM2 signing key in the container (made if missing), no PIN\n"
    "                                 or button asked; prints its public key 04||x||y in hex\n"
    "  put-cert NAME APP CONTAINER sign|enc FILE   test fixture: stores the DER certificate in FILE\n";

static int fail(const char *msg, const char *arg) {
  fprintf(stderr, "skf-softkey-admin: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
  return 2;
}

static int parse_u32(const char *s, uint32_t *out) {
  char *end;
  unsigned long v;
  errno = 0;
  v = strtoul(s, &end, 10);
  if (errno || *end || end == s || v > 0xffffffffUL) return -1;
  *out = (uint32_t)v;
  return 0;
}

static int parse_version(const char *s, uint32_t *major, uint32_t *minor) {
  unsigned a, b;
  char tail;
  if (sscanf(s, "%u.%u%c", &a, &b, &tail) != 2 || a > 255 || b > 255) return -1;
  *major = a;
  *minor = b;
  return 0;
}

static int set_str(char *dst, size_t size, const char *src) {
  if (strlen(src) >= size) return -1;
  snprintf(dst, size, "%s", src);
  return 0;
}

static int cmd_create(const char *name, int argc, char **argv) {
  ss_device dev;
  ss_app *app = NULL;
  char dir[4096];
  const char *app_name = "DEFAULT_APP", *user_pin = "12345678", *admin_pin = "88888888";
  uint32_t user_retries = 6, admin_retries = 10;
  int user_pin_given = 0, admin_pin_given = 0, fd, rc;
  unsigned char rnd[8];
  memset(&dev, 0, sizeof dev);
  snprintf(dev.label, sizeof dev.label, "SoftKey");
  snprintf(dev.manufacturer, sizeof dev.manufacturer, "ukey-renew skf-softkey (software test key)");
  snprintf(dev.issuer, sizeof dev.issuer, "ukey-renew tests");
  dev.hw_major = 3;
  dev.fw_major = 1;
  dev.total_space = 32768;
  dev.max_containers = 8;
  dev.button_timeout_ms = 30000;
  dev.devauth_max = dev.devauth_remain = 10;
  memcpy(dev.devauth_key, "1234567812345678", 16);
  if (ss_random(rnd, sizeof rnd) != 0) return fail("no random", NULL);
  for (int i = 0; i < 8; i++) snprintf(dev.serial + 2 * i, 3, "%02X", rnd[i]);
  for (int i = 0; i < argc; i++) {
    const char *opt = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(opt, "--no-app") == 0) {
      app_name = NULL;
      continue;
    }
    if (!v) return fail("missing value for", opt);
    i++;
    if (strcmp(opt, "--label") == 0) {
      if (set_str(dev.label, sizeof dev.label, v)) return fail("label longer than 32 octets", v);
    } else if (strcmp(opt, "--serial") == 0) {
      if (set_str(dev.serial, sizeof dev.serial, v)) return fail("serial longer than 32 octets", v);
    } else if (strcmp(opt, "--manufacturer") == 0) {
      if (set_str(dev.manufacturer, sizeof dev.manufacturer, v)) return fail("manufacturer longer than 64 octets", v);
    } else if (strcmp(opt, "--issuer") == 0) {
      if (set_str(dev.issuer, sizeof dev.issuer, v)) return fail("issuer longer than 64 octets", v);
    } else if (strcmp(opt, "--hw-version") == 0) {
      if (parse_version(v, &dev.hw_major, &dev.hw_minor)) return fail("bad version (MAJOR.MINOR)", v);
    } else if (strcmp(opt, "--fw-version") == 0) {
      if (parse_version(v, &dev.fw_major, &dev.fw_minor)) return fail("bad version (MAJOR.MINOR)", v);
    } else if (strcmp(opt, "--app") == 0) {
      if (strlen(v) == 0 || strlen(v) > MAX_APPNAME_LEN) return fail("application name of 1 to 32 octets", v);
      app_name = v;
    } else if (strcmp(opt, "--user-pin") == 0) {
      user_pin = v;
      user_pin_given = 1;
    } else if (strcmp(opt, "--admin-pin") == 0) {
      admin_pin = v;
      admin_pin_given = 1;
    } else if (strcmp(opt, "--user-retries") == 0) {
      if (parse_u32(v, &user_retries) || user_retries < 1 || user_retries > 15) return fail("retries 1 to 15", v);
    } else if (strcmp(opt, "--admin-retries") == 0) {
      if (parse_u32(v, &admin_retries) || admin_retries < 1 || admin_retries > 15) return fail("retries 1 to 15", v);
    } else if (strcmp(opt, "--storage") == 0) {
      if (parse_u32(v, &dev.total_space)) return fail("bad storage size", v);
    } else if (strcmp(opt, "--max-containers") == 0) {
      if (parse_u32(v, &dev.max_containers)) return fail("bad container count", v);
    } else if (strcmp(opt, "--button-timeout-ms") == 0) {
      if (parse_u32(v, &dev.button_timeout_ms)) return fail("bad timeout", v);
    } else if (strcmp(opt, "--dev-auth-retries") == 0) {
      if (parse_u32(v, &dev.devauth_max) || dev.devauth_max < 1) return fail("bad retries", v);
      dev.devauth_remain = dev.devauth_max;
    } else if (strcmp(opt, "--envelope-layout") == 0) {
      if (strcmp(v, "left") && strcmp(v, "right")) return fail("envelope layout is left or right", v);
      dev.envelope_left = strcmp(v, "left") == 0;
    } else if (strcmp(opt, "--dev-auth-key") == 0) {
      if (strlen(v) != 32) return fail("device authentication key: 32 hex digits", v);
      for (int k = 0; k < 16; k++) {
        unsigned b;
        if (sscanf(v + 2 * k, "%2x", &b) != 1) return fail("device authentication key: 32 hex digits", v);
        dev.devauth_key[k] = (unsigned char)b;
      }
    } else {
      return fail("unknown option", opt);
    }
  }
  if (strlen(user_pin) < 6 || strlen(user_pin) > 16 || strlen(admin_pin) < 6 || strlen(admin_pin) > 16)
    return fail("PINs are 6 to 16 characters", NULL);
  if (app_name) {
    app = ss_add_app(&dev);
    if (!app) return fail("out of memory", NULL);
    snprintf(app->name, sizeof app->name, "%s", app_name);
    snprintf(app->user_pin, sizeof app->user_pin, "%s", user_pin);
    snprintf(app->admin_pin, sizeof app->admin_pin, "%s", admin_pin);
    app->user_max = app->user_remain = user_retries;
    app->admin_max = app->admin_remain = admin_retries;
    app->user_default = !user_pin_given;
    app->admin_default = !admin_pin_given;
    app->create_rights = SECURE_USER_ACCOUNT;
  }
  if (ss_path(dir, sizeof dir, name, NULL) != 0) return fail("SKF_SOFTKEY_DIR unset or bad device name", name);
  if (mkdir(dir, 0700) != 0) return fail(errno == EEXIST ? "device exists" : "cannot create", dir);
  fd = ss_lock(name);
  rc = ss_save(name, &dev);
  ss_unlock(fd);
  ss_free(&dev);
  if (rc != 0) return fail("cannot write state in", dir);
  printf("%s\n", dir);
  return 0;
}

static void json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

static void json_hex(const ss_buf *b) {
  putchar('"');
  for (size_t i = 0; i < b->n; i++) printf("%02x", b->p[i]);
  putchar('"');
}

static int cmd_show(const char *name) {
  ss_device dev;
  int fd = ss_lock(name), rc;
  if (fd < 0 || (rc = ss_load(name, &dev)) != 0) {
    ss_unlock(fd);
    return fail("no such device (or unreadable state)", name);
  }
  ss_unlock(fd);
  printf("{\"name\":");
  json_str(name);
  printf(",\"label\":");
  json_str(dev.label);
  printf(",\"serial\":");
  json_str(dev.serial);
  printf(",\"manufacturer\":");
  json_str(dev.manufacturer);
  printf(",\"hwVersion\":\"%u.%u\",\"fwVersion\":\"%u.%u\",\"totalSpace\":%u,\"usedSpace\":%u,\"devAuthRemain\":%u,"
         "\"envelopeLayout\":\"%s\",\"applications\":[",
         dev.hw_major, dev.hw_minor, dev.fw_major, dev.fw_minor, dev.total_space, ss_used_space(&dev),
         dev.devauth_remain, dev.envelope_left ? "left" : "right");
  for (ss_app *a = dev.apps; a; a = a->next) {
    printf("%s{\"name\":", a == dev.apps ? "" : ",");
    json_str(a->name);
    printf(",\"userRetries\":{\"max\":%u,\"remain\":%u,\"default\":%s},\"adminRetries\":{\"max\":%u,\"remain\":%u,"
           "\"default\":%s},\"containers\":[",
           a->user_max, a->user_remain, a->user_default ? "true" : "false", a->admin_max, a->admin_remain,
           a->admin_default ? "true" : "false");
    for (ss_container *c = a->containers; c; c = c->next) {
      printf("%s{\"name\":", c == a->containers ? "" : ",");
      json_str(c->name);
      printf(",\"type\":\"%s\",\"signPublicKey\":", c->type == 2 ? "ECC" : c->type == 1 ? "RSA" : "empty");
      json_hex(&c->sign_pub);
      printf(",\"encPublicKey\":");
      json_hex(&c->enc_pub);
      printf(",\"signCertificate\":");
      json_hex(&c->sign_cert);
      printf(",\"encCertificate\":");
      json_hex(&c->enc_cert);
      printf("}");
    }
    printf("]}");
  }
  printf("]}\n");
  ss_free(&dev);
  return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int cmd_remove(const char *name) {
  char dir[4096];
  if (ss_path(dir, sizeof dir, name, NULL) != 0) return fail("SKF_SOFTKEY_DIR unset or bad device name", name);
  if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) return fail("cannot remove", dir);
  return 0;
}

static int cmd_plug(const char *name, int plug) {
  char dir[4096], hidden[4200];
  if (ss_path(dir, sizeof dir, name, NULL) != 0) return fail("SKF_SOFTKEY_DIR unset or bad device name", name);
  snprintf(hidden, sizeof hidden, "%s/.%s.unplugged", ss_root(), name);
  if (rename(plug ? hidden : dir, plug ? dir : hidden) != 0) return fail(plug ? "not unplugged" : "not plugged in", name);
  return 0;
}

static int write_file(const char *name, const char *file, const char *text) {
  char p[4096], tmp[4200];
  FILE *f;
  if (ss_path(p, sizeof p, name, file) != 0) return fail("SKF_SOFTKEY_DIR unset or bad device name", name);
  if (!ss_present(name)) return fail("no such device", name);
  snprintf(tmp, sizeof tmp, "%s.tmp", p);
  f = fopen(tmp, "w");
  if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0 || rename(tmp, p) != 0) return fail("cannot write", p);
  return 0;
}

/* Test fixtures: change the state as the factory or an earlier session would have, without PIN or button. */
static int cmd_fixture(const char *name, int argc, char **argv, int gen) {
  ss_device dev;
  ss_app *app;
  ss_container *c;
  int fd, rc = 0;
  unsigned char d[32], pub[65], *cert = NULL;
  long certlen = 0;
  if (argc != (gen ? 2 : 4)) return fail(gen ? "gen-key NAME APP CONTAINER" : "put-cert NAME APP CONTAINER sign|enc FILE", NULL);
  if (strlen(argv[1]) == 0 || strlen(argv[1]) > MAX_CNTNAME_LEN) return fail("container name of 1 to 64 octets", argv[1]);
  if (!gen) {
    FILE *f = fopen(argv[3], "rb");
    if (strcmp(argv[2], "sign") && strcmp(argv[2], "enc")) return fail("sign or enc", argv[2]);
    if (!f || fseek(f, 0, SEEK_END) != 0 || (certlen = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) != 0 ||
        !(cert = malloc((size_t)certlen)) || fread(cert, 1, (size_t)certlen, f) != (size_t)certlen)
      return fail("cannot read", argv[3]);
    fclose(f);
  }
  fd = ss_lock(name);
  if (fd < 0 || ss_load(name, &dev) != 0) {
    ss_unlock(fd);
    free(cert);
    return fail("no such device (or unreadable state)", name);
  }
  app = ss_find_app(&dev, argv[0]);
  c = app ? ss_find_container(app, argv[1]) : NULL;
  if (!app) {
    rc = fail("no such application", argv[0]);
  } else if (!c && !(c = ss_add_container(app))) {
    rc = fail("out of memory", NULL);
  } else {
    snprintf(c->name, sizeof c->name, "%s", argv[1]);
    if (gen) {
      if (c->type == 1) {
        rc = fail("an RSA container", argv[1]);
      } else if (ss_sm2_keygen(d, pub) != 0 || ss_buf_set(&c->sign_priv, d, 32) || ss_buf_set(&c->sign_pub, pub, 65)) {
        rc = fail("key generation failed", NULL);
      } else {
        c->type = 2;
      }
    } else if (ss_buf_set(strcmp(argv[2], "sign") == 0 ? &c->sign_cert : &c->enc_cert, cert, (size_t)certlen)) {
      rc = fail("out of memory", NULL);
    }
    if (!rc && ss_save(name, &dev) != 0) rc = fail("cannot write the state of", name);
  }
  ss_unlock(fd);
  ss_free(&dev);
  free(cert);
  if (!rc && gen) {
    for (int i = 0; i < 65; i++) printf("%02x", pub[i]);
    putchar('\n');
  }
  return rc;
}

int main(int argc, char **argv) {
  const char *cmd = argc > 1 ? argv[1] : "help", *name = argc > 2 ? argv[2] : NULL;
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0) {
    fputs(usage, stdout);
    return 0;
  }
  if (!ss_root()) return fail("set SKF_SOFTKEY_DIR to the directory of the software keys", NULL);
  if (!name || !ss_valid_name(name)) return fail("a device name is needed (no '/', not starting with '.')", name);
  if (strcmp(cmd, "create") == 0) return cmd_create(name, argc - 3, argv + 3);
  if (strcmp(cmd, "show") == 0) return cmd_show(name);
  if (strcmp(cmd, "remove") == 0) return cmd_remove(name);
  if (strcmp(cmd, "unplug") == 0) return cmd_plug(name, 0);
  if (strcmp(cmd, "plug") == 0) return cmd_plug(name, 1);
  if (strcmp(cmd, "gen-key") == 0) return cmd_fixture(name, argc - 3, argv + 3, 1);
  if (strcmp(cmd, "put-cert") == 0) return cmd_fixture(name, argc - 3, argv + 3, 0);
  if (strcmp(cmd, "button") == 0) {
    const char *mode = argc > 3 ? argv[3] : "";
    if (strcmp(mode, "auto") && strcmp(mode, "refuse") && strcmp(mode, "timeout") && strcmp(mode, "wait"))
      return fail("button mode is auto, refuse, timeout or wait", mode);
    return write_file(name, "button", mode);
  }
  if (strcmp(cmd, "press") == 0) {
    const char *answer = argc > 3 ? argv[3] : "ok";
    if (strcmp(answer, "ok") && strcmp(answer, "cancel")) return fail("press answers ok or cancel", answer);
    return write_file(name, "press", answer);
  }
  fputs(usage, stderr);
  return 2;
}
