#!/usr/bin/env bash
# Generates the certificates the TLS tests use, with the openssl command, into DIR:
#   ca.pem / ca.key                 the cluster CA
#   node1..node5.pem / .key         node certificates: URI SAN nodehost://node/N (+ IP 127.0.0.1)
#   client.pem / client.key         a client program: CN=alice, URI SAN urn:nodehost:client:alice
#   ops.pem / ops.key               an operator: CN=ops (no SAN)
#   twonodes.pem / .key             URI SANs of node 2 and node 3 (proves neither)
#   expired.pem / expired.key       node 2's identity, valid 2020-01-01..2020-01-02 only
#   future.pem / future.key         node 2's identity, valid from 2099 on
#   other-ca.pem, rogue2.pem/.key   another CA, and a node 2 certificate it signed
#   rotated1.pem / .key             node 1 signed by the other CA (certificate rotation tests)
# Usage: make_certs.sh DIR   (EC P-256 keys; takes well under a second)
set -euo pipefail
dir=${1:?usage: make_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

ca_conf() { # $1: CA name
  mkdir -p "$1.db"
  : > "$1.db/index.txt"
  echo 1000 > "$1.db/serial"
  cat > "$1.cnf" <<CNF
[ ca ]
default_ca = this
[ this ]
dir = ./$1.db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = supplied
[ leaf ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = \$ENV::SAN
CNF
}

make_ca() { # $1: name
  openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
  openssl req -x509 -new -key "$1.key" -sha256 -days 3650 -subj "/CN=$1 test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem" 2>/dev/null
  ca_conf "$1"
}

# leaf NAME CN SAN CA [START END]
leaf() {
  local name=$1 cn=$2 san=$3 ca=$4 start=${5:-} end=${6:-}
  openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr" 2>/dev/null
  local dates=(-days 825)
  [ -n "$start" ] && dates=(-startdate "$start" -enddate "$end")
  SAN="$san" openssl ca -batch -notext -config "$ca.cnf" -cert "$ca.pem" -keyfile "$ca.key" \
    -extensions leaf "${dates[@]}" -in "$name.csr" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr"
}

make_ca ca
for n in 1 2 3 4 5; do
  leaf "node$n" "node$n" "URI:nodehost://node/$n,IP:127.0.0.1" ca
done
leaf client alice "URI:urn:nodehost:client:alice" ca
leaf ops ops "DNS:ops.invalid" ca
leaf twonodes node2 "URI:nodehost://node/2,URI:nodehost://node/3" ca
leaf expired node2 "URI:nodehost://node/2" ca 20200101000000Z 20200102000000Z
leaf future node2 "URI:nodehost://node/2" ca 20990101000000Z 20991231000000Z
make_ca other-ca
leaf rogue2 node2 "URI:nodehost://node/2" other-ca
leaf rotated1 node1 "URI:nodehost://node/1,IP:127.0.0.1" other-ca
chmod 600 ./*.key
