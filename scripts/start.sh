#!/usr/bin/env bash
# The main job: installs what is missing, initialises a demo data directory
# on first run (CA, a demo holder with a certificate), then serves.
#   UKEY_DATA_DIR  data directory (default .data)
#   UKEY_PORT      HTTP port (default 8080)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-node-modules.sh
bash scripts/build-web.sh
# The server runs from its build (plain JavaScript), as in production; the build is skipped when nothing changed.
node scripts/build.mjs
ukey_server() { node packages/server/dist/ukey-server.mjs "$@"; }
DATA="${UKEY_DATA_DIR:-.data}"
SECRETS="${DATA}.secrets"
PORT="${UKEY_PORT:-8080}"
if [ ! -f "$DATA/config.json" ]; then
  echo "== first run: initialising $DATA"
  umask 077
  mkdir -p "$SECRETS"
  # A random passphrase kept beside (not inside) the data directory; there is no default secret.
  [ -f "$SECRETS/ca-passphrase" ] || openssl rand -base64 32 > "$SECRETS/ca-passphrase"
  export UKEY_CA_PASSPHRASE_FILE="$SECRETS/ca-passphrase"
  ukey_server init --data-dir "$DATA" --public-url "http://localhost:$PORT" --org "ukey-renew demo"
  echo "110101199003077777" > "$SECRETS/demo-id-number"
  ukey_server holder add --data-dir "$DATA" --id DEMO001 --name "张三 Zhang San" --id-type resident-id \
    --id-number-file "$SECRETS/demo-id-number" --phone 15900000005 --email zhangsan@example.com
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$SECRETS/demo.key.pem" \
    -subj "/CN=demo" -out "$SECRETS/demo.csr.pem" 2>/dev/null
  ukey_server issue --data-dir "$DATA" --holder DEMO001 --profile personal --csr "$SECRETS/demo.csr.pem" --out "$DATA.demo-cert.pem"
  # A second holder whose file certificate (PKCS#12, the embedded software
  # token) expires in 60 days, inside its renewal window, so a newcomer can
  # renew it at once with `ukey renew` and no hardware.
  node scripts/demo-profile.mjs "$DATA/config.json"
  echo "110101198506061234" > "$SECRETS/demo2-id-number"
  ukey_server holder add --data-dir "$DATA" --id DEMO002 --name "李四 Li Si" --id-type resident-id \
    --id-number-file "$SECRETS/demo2-id-number" --phone 15900000006
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$SECRETS/demo2.key.pem" \
    -subj "/" -out "$SECRETS/demo2.csr.pem" 2>/dev/null
  ukey_server issue --data-dir "$DATA" --holder DEMO002 --profile demo-file --csr "$SECRETS/demo2.csr.pem" --out "$SECRETS/demo2.cert.pem"
  openssl rand -hex 4 > "$SECRETS/demo-token-pin"
  cat "$DATA/ca/issuing.cer.pem" > "$SECRETS/demo2.chain.pem"
  openssl pkcs12 -export -inkey "$SECRETS/demo2.key.pem" -in "$SECRETS/demo2.cert.pem" -certfile "$SECRETS/demo2.chain.pem" \
    -name "ukey-renew demo" -passout "file:$SECRETS/demo-token-pin" -out "$DATA.demo-token.p12"
  rm -f "$SECRETS/demo2.key.pem"
  # The first operator, so that the console can be used at once: an admin
  # with a random password; its TOTP secret is kept beside the password
  # (for the demo only: a real operator adds it to an authenticator app).
  openssl rand -base64 18 > "$SECRETS/operator-password"
  npx ukey-server operator add --data-dir "$DATA" --id admin --role admin \
    --password-file "$SECRETS/operator-password" > "$SECRETS/operator-admin.txt"
fi
echo "== portal (holders):    http://localhost:$PORT/"
echo "== console (operators): http://localhost:$PORT/console/"
if [ -f "$SECRETS/operator-admin.txt" ]; then
  echo "   sign in as: admin, password in $SECRETS/operator-password, TOTP secret in $SECRETS/operator-admin.txt"
fi
if [ -f "$DATA.demo-token.p12" ]; then
  echo "== demo file token: $DATA.demo-token.p12 (PIN in $SECRETS/demo-token-pin, holder DEMO002, ID number in $SECRETS/demo2-id-number)"
  echo "   renew it:  npx ukey renew --server http://localhost:$PORT --pkcs12 $DATA.demo-token.p12"
  echo "   or in the portal: npx ukey agent start --server http://localhost:$PORT --pkcs12 $DATA.demo-token.p12"
fi
export UKEY_CA_PASSPHRASE_FILE="${UKEY_CA_PASSPHRASE_FILE:-$SECRETS/ca-passphrase}"
echo "== serving: CRL http://localhost:$PORT/crl/issuing.crl, OCSP http://localhost:$PORT/ocsp, CA http://localhost:$PORT/ca/issuing.pem"
exec node packages/server/dist/ukey-server.mjs start --data-dir "$DATA" --port "$PORT"
