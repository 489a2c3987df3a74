#!/bin/bash
# Makes the certificates the etcd-over-HTTPS tests use, with openssl, in
# DIR:
#
#   make-etcd-certs.sh DIR
#
# Files written (PEM; every key unencrypted, EC P-256, valid ten years):
#   ca-cert.pem, ca-key.pem              the cluster's CA
#   other-ca-cert.pem, other-ca-key.pem  a second, unrelated CA
#   member-cert.pem, member-key.pem      an etcd member: CN=etcd-member,
#                                        IP SAN 127.0.0.1, signed by the
#                                        cluster's CA, serverAuth and
#                                        clientAuth (etcd's own gateway
#                                        dials the member with it)
#   rogue-cert.pem, rogue-key.pem        the same, signed by the other CA
#   client-cert.pem, client-key.pem      a client: CN=usbgw, cluster's CA
#   foreign-cert.pem, foreign-key.pem    a client: CN=usbgw, other CA
#   both-ca-cert.pem                     both CAs (what a rogue member trusts)
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
mkdir -p "$1"
cd "$1"
work=$(mktemp -d make-etcd-certs.XXXXXX)
trap 'rm -rf "$work"' EXIT

printf '%s\n' 'basicConstraints=critical,CA:false' 'keyUsage=critical,digitalSignature' \
    'extendedKeyUsage=serverAuth,clientAuth' 'subjectAltName=IP:127.0.0.1' >"$work/member.ext"
printf '%s\n' 'basicConstraints=critical,CA:false' 'keyUsage=critical,digitalSignature' \
    'extendedKeyUsage=clientAuth' >"$work/client.ext"

newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# make_ca PREFIX CN
make_ca() {
    newkey "$1-key.pem"
    openssl req -x509 -new -key "$1-key.pem" -subj "/CN=$2" -days 3650 \
        -addext "basicConstraints=critical,CA:true" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1-cert.pem"
}

# sign CA_PREFIX FILE_PREFIX CN EXTFILE
sign() {
    newkey "$2-key.pem"
    openssl req -new -key "$2-key.pem" -subj "/CN=$3" -out "$work/$2.csr"
    openssl x509 -req -in "$work/$2.csr" -CA "$1-cert.pem" -CAkey "$1-key.pem" \
        -set_serial "0x$(openssl rand -hex 8)" -days 3650 -extfile "$4" \
        -out "$2-cert.pem" 2>"$work/x509.log" || {
        cat "$work/x509.log" >&2
        exit 1
    }
}

make_ca ca "usbgw etcd test CA"
make_ca other-ca "usbgw unrelated test CA"
sign ca member etcd-member "$work/member.ext"
sign other-ca rogue etcd-member "$work/member.ext"
sign ca client usbgw "$work/client.ext"
sign other-ca foreign usbgw "$work/client.ext"
# what a member serving the rogue certificate trusts: its own gateway
# dials it with that certificate, and clients come with the cluster CA's
cat ca-cert.pem other-ca-cert.pem >both-ca-cert.pem
