#!/bin/sh
# Self-signed TLS for lowcarb's webhook, for clusters without cert-manager (needs openssl).
#
#   deploy/kustomize/components/webhook/self-signed-cert.sh DIR
#
# Writes DIR/ca.crt, DIR/ca.key (a private CA, CA_DAYS valid) and DIR/tls.crt, DIR/tls.key
# (the serving certificate for $SERVICE.$NAMESPACE.svc, DAYS valid, signed by that CA), then
# prints the kubectl commands that create the secret the webhook pods mount and put the CA
# into the webhook's caBundle. Run it again with the same DIR to renew the serving
# certificate: the CA in DIR is reused, so the caBundle does not change (then re-run the
# secret command and restart deploy/lowcarb-webhook). Keep DIR private (ca.key signs
# certificates the API server trusts for this webhook); never commit it.
#
# Environment: SERVICE (lowcarb-webhook), NAMESPACE (lowcarb-system), DAYS (365),
# CA_DAYS (3650), WEBHOOK (lowcarb-carbon-window, the MutatingWebhookConfiguration).
set -eu

if [ "$#" -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    echo "usage: $0 DIR   (writes ca.crt, ca.key, tls.crt, tls.key into DIR)" >&2
    exit 2
fi
if ! command -v openssl >/dev/null 2>&1; then
    echo "error: openssl not found: install it (Debian: apt-get install openssl)" >&2
    exit 2
fi

dir=$1
service=${SERVICE:-lowcarb-webhook}
namespace=${NAMESPACE:-lowcarb-system}
days=${DAYS:-365}
ca_days=${CA_DAYS:-3650}
webhook=${WEBHOOK:-lowcarb-carbon-window}
dns="$service.$namespace.svc"

umask 077
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Explicit configurations: the result does not depend on the system's openssl.cnf.
cat >"$work/ca.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = $service-ca
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
CNF
cat >"$work/server.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $dns
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:$dns,DNS:$dns.cluster.local
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

if [ -s "$dir/ca.key" ] && [ -s "$dir/ca.crt" ]; then
    echo "reusing the CA in $dir (the webhook's caBundle stays the same)" >&2
else
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" -days "$ca_days" -config "$work/ca.cnf" \
        2>"$work/log" || { cat "$work/log" >&2; exit 1; }
fi
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/tls.key" -out "$work/tls.csr" -config "$work/server.cnf" \
    2>"$work/log" || { cat "$work/log" >&2; exit 1; }
openssl x509 -req -in "$work/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -out "$dir/tls.crt" \
    -extfile "$work/server.cnf" -extensions v3_server \
    2>"$work/log" || { cat "$work/log" >&2; exit 1; }
openssl verify -CAfile "$dir/ca.crt" "$dir/tls.crt" >/dev/null

bundle=$(openssl base64 -A -in "$dir/ca.crt")
cat <<DONE
Wrote $dir/ca.crt, $dir/ca.key, $dir/tls.crt, $dir/tls.key (serving certificate for $dns).

1. Before applying the manifests, create (or replace) the secret the webhook pods mount:

kubectl -n $namespace create secret tls $service-tls --cert=$dir/tls.crt --key=$dir/tls.key --dry-run=client -o yaml | kubectl apply -f -

2. After applying them, give the API server the CA:

kubectl patch mutatingwebhookconfiguration $webhook --type=json -p='[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":"$bundle"}]'
DONE
