# shellcheck shell=sh
# Generates the OVSDB client key and a self-signed certificate with ovs-pki in directory $1 (clientCertificate:
# Generate; ovs-pki names them ovsclient-privkey.pem and ovsclient-cert.pem, as paths.py says).
cd "$1" && ovs-pki --force req ovsclient && ovs-pki --force self-sign ovsclient
