/*  =========================================================================
    sslshim.c - the one OpenSSL 1.1 name that Debian's civetweb 1.15 still
    looks up, for OpenSSL 3

    Debian 12's libcivetweb1 (1.15) opens "libssl.so" at run time and looks
    up OpenSSL's functions by name; OpenSSL 3 renamed one of them,
    SSL_get_peer_certificate, to SSL_get1_peer_certificate (the old name is
    a macro now). civetweb finds nothing, keeps a null pointer, and calls it
    on every TLS connection: the gateway would crash on the first HTTPS
    client. This library is named libssl.so (its SONAME), depends on the real
    libssl.so.3 and adds the old name; the gateway links it, so when
    civetweb opens "libssl.so" the dynamic loader hands it this library,
    and every lookup finds either the name here or OpenSSL's own, through
    the dependency. No code of civetweb's is changed.
    =========================================================================
*/

#include <openssl/ssl.h>

#undef SSL_get_peer_certificate        //  a macro for the new name in OpenSSL 3

X509 *SSL_get_peer_certificate (const SSL *ssl);
const char *nearchat_sslshim (void);

//  The same function under its OpenSSL 1.1 name (it took a reference
//  then as get1 does now, so civetweb's X509_free stays right).
X509 *
SSL_get_peer_certificate (const SSL *ssl)
{
    return SSL_get1_peer_certificate (ssl);
}

//  Called by the gateway, so that its link to this library is kept.
const char *
nearchat_sslshim (void)
{
    return "libssl.so with SSL_get_peer_certificate for civetweb 1.15";
}
