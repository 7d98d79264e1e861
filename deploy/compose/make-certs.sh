#!/bin/sh
# Test PKI for compose trials (the `certs` service runs it; it also runs on a host with openssl):
#
#     sh deploy/compose/make-certs.sh DIR
#
# writes into DIR, once (an existing DIR/server.pem leaves everything as it is):
#   ca.pem                       the CA that issued the broker's certificate (clients trust it)
#   server.pem, server-key.pem   the broker's certificate (framed and admin listeners) for
#                                broker, broker-emu, localhost and 127.0.0.1
#   callers-ca.pem               the CA of callers' client certificates (server.clientCA)
#   caller.pem, caller-key.pem   one caller, URI SAN spiffe://fedbroker.local/demo-caller
#
# ECDSA P-256, 30 days. Local trials only: in production the certificates come from your PKI
# (cert-manager, Key Vault certificates) as Kubernetes Secrets or files (docs/deploy.md).
set -eu
dir=${1:?usage: make-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [ -s server.pem ]; then
  echo "make-certs: $dir/server.pem exists; keeping the certificates there"
  exit 0
fi
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

ca() { # ca NAME SUBJECT
  key "$work/$1-key.pem"
  openssl req -x509 -new -key "$work/$1-key.pem" -sha256 -days 30 -subj "$2" \
    -addext basicConstraints=critical,CA:TRUE,pathlen:0 \
    -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$work/$1.pem"
}

leaf() { # leaf NAME CA SUBJECT EXTENSIONS
  key "$work/$1-key.pem"
  openssl req -new -key "$work/$1-key.pem" -subj "$3" -out "$work/$1.csr"
  printf '%s\n' "$4" > "$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA "$work/$2.pem" -CAkey "$work/$2-key.pem" -CAcreateserial \
    -days 30 -sha256 -extfile "$work/$1.ext" -out "$work/$1.pem"
}

ca ca "/CN=fedbroker compose server CA"
ca callers-ca "/CN=fedbroker compose callers CA"
leaf server ca "/CN=fedbroker" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:broker,DNS:broker-emu,DNS:fedbroker,DNS:localhost,IP:127.0.0.1"
leaf caller callers-ca "/CN=demo-caller" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=URI:spiffe://fedbroker.local/demo-caller"

install -m 0644 "$work/ca.pem" "$work/callers-ca.pem" "$work/server.pem" "$work/caller.pem" .
install -m 0600 "$work/server-key.pem" "$work/caller-key.pem" .
# The CAs' keys are not kept: nothing here issues more certificates; run again in a new DIR.
echo "make-certs: wrote ca.pem, server.pem, server-key.pem, callers-ca.pem, caller.pem, caller-key.pem to $dir"
