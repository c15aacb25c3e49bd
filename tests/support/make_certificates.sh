#!/bin/sh
# Makes the certificates the TLS tests and benchmarks use, in directory $1: two CAs (ca,
# other), a server certificate for "localhost" and a client certificate signed by ca, and
# an impostor's certificate signed by other. Each as NAME.pem and NAME.key (EC P-256).
set -e
mkdir -p "$1"
cd "$1"
key_options="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
for ca in ca other; do
  openssl req -x509 $key_options -days 2 -subj "/CN=$ca" -keyout "$ca.key" -out "$ca.pem" 2>/dev/null
done
sign() {  # NAME CA
  openssl req $key_options -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\n' > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 2 -extfile "$1.ext" \
    -out "$1.pem" 2>/dev/null
}
sign server ca
sign client ca
sign impostor other
