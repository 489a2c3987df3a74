#!/bin/bash
# Makes the certificates the gateway-link tests use, with openssl (3.0 or
# later), in DIR:
#
#   make-certs.sh DIR NAME...
#
# Files written (PEM; every key unencrypted, EC P-256):
#   ca-cert.pem, ca-key.pem              the link CA
#   other-ca-cert.pem, other-ca-key.pem  a second, unrelated CA
#   NAME-cert.pem, NAME-key.pem          per NAME: CN=NAME, signed by the
#                                        link CA, valid now, serverAuth and
#                                        clientAuth
#   expired-cert.pem, expired-key.pem    CN=expired, link CA, valid
#                                        2020-01-01 to 2021-01-01 only
#   notyet-cert.pem, notyet-key.pem      CN=notyet, link CA, valid from
#                                        2090-01-01 to 2091-01-01
#   badcn-cert.pem, badcn-key.pem        CN="bad name/x", link CA, valid now
#   foreign-cert.pem, foreign-key.pem    CN=foreign, signed by the other CA
#   twocn-cert.pem, twocn-key.pem        link CA, two CNs (alpha and beta)
#   escaped-cert.pem, escaped-key.pem    link CA, CN="a,b" (escaped in the
#                                        subject GIO shows)
#   nocn-cert.pem, nocn-key.pem          link CA, O=usbgw and no CN
#
# A NAME must be a gateway name ([A-Za-z0-9][A-Za-z0-9._-]*) other than
# the fixed names above. Past and future validity periods come from
# `openssl ca -startdate/-enddate`, so no clock faking is needed.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 DIR NAME..." >&2
    exit 2
fi
dir=$1
shift
for name in "$@"; do
    if ! [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || [ ${#name} -gt 64 ]; then
        echo "$0: \"$name\" is not a gateway name" >&2
        exit 2
    fi
    case $name in
    ca | other-ca | expired | notyet | badcn | foreign | twocn | escaped | nocn)
        echo "$0: \"$name\" is one of the fixed certificate names" >&2
        exit 2
        ;;
    esac
done
mkdir -p "$dir"
cd "$dir"
work=$(mktemp -d make-certs.XXXXXX)
trap 'rm -rf "$work"' EXIT

# One configuration for both CAs (the directory comes from $CA_DIR): the
# CA extensions for the self-signed roots, the gateway extensions for what
# they sign.
cat >"$work/openssl.cnf" <<'CNF'
[ca]
default_ca = link_ca

[link_ca]
dir = $ENV::CA_DIR
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir
default_md = sha256
policy = any_policy
unique_subject = no
copy_extensions = none
x509_extensions = gateway_ext

[any_policy]
commonName = optional
organizationName = optional

[req]
distinguished_name = req_dn
prompt = no

[req_dn]

[ca_ext]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[gateway_ext]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
export OPENSSL_CONF="$work/openssl.cnf"
export CA_DIR="$work" # set per CA below

newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# make_ca PREFIX CN
make_ca() {
    mkdir -p "$work/$1"
    touch "$work/$1/index.txt"
    echo 01 >"$work/$1/serial"
    newkey "$1-key.pem"
    openssl req -x509 -new -key "$1-key.pem" -subj "/CN=$2" -days 3650 \
        -extensions ca_ext -out "$1-cert.pem"
}

# sign CA_PREFIX FILE_PREFIX SUBJECT START END (dates as YYYYMMDDHHMMSSZ;
# empty: from now, for ten years)
sign() {
    local dates=(-days 3650)
    if [ -n "$4" ]; then
        dates=(-startdate "$4" -enddate "$5")
    fi
    newkey "$2-key.pem"
    openssl req -new -key "$2-key.pem" -subj "$3" -out "$work/$2.csr"
    CA_DIR="$work/$1" openssl ca -batch -notext -in "$work/$2.csr" \
        -cert "$1-cert.pem" -keyfile "$1-key.pem" "${dates[@]}" \
        -out "$2-cert.pem" 2>"$work/ca.log" || {
        cat "$work/ca.log" >&2
        exit 1
    }
}

make_ca ca "usbgw link test CA"
make_ca other-ca "usbgw unrelated test CA"
for name in "$@"; do
    sign ca "$name" "/CN=$name" "" ""
done
sign ca expired "/CN=expired" 20200101000000Z 20210101000000Z
sign ca notyet "/CN=notyet" 20900101000000Z 20910101000000Z
sign ca badcn "/CN=bad name\/x" "" ""
sign other-ca foreign "/CN=foreign" "" ""
sign ca twocn "/CN=alpha/CN=beta" "" ""
sign ca escaped "/CN=a,b" "" ""
sign ca nocn "/O=usbgw" "" ""
