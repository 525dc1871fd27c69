/*  =========================================================================
    tls.c - HTTPS and WSS on HTTPS_PORT when TLS_CERT and TLS_KEY are set

    civetweb does the TLS (it opens OpenSSL itself). Its own setting wants
    the key and the certificate in one file; operators have them apart (as
    certbot and Kubernetes secrets give them), so the gateway loads both
    into civetweb's SSL_CTX through its init_ssl callback instead of
    writing a private key into a file of its own.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "gateway.h"
#include "log.h"

static void
s_bad (const char *name, const char *value, const char *why)
{
    char detail [256] = "";
    unsigned long error = ERR_get_error ();
    if (error)
        ERR_error_string_n (error, detail, sizeof detail);
    fprintf (stderr, "gateway: bad value for %s: '%s' (%s%s%s)\n", name, value, why,
             *detail? ": ": "", detail);
    exit (2);
}

//  Load both into context; returns NULL or which setting failed.
static const char *
s_load (SSL_CTX *context)
{
    if (SSL_CTX_use_certificate_chain_file (context, gateway_config.tls_cert) != 1)
        return "TLS_CERT";
    if (SSL_CTX_use_PrivateKey_file (context, gateway_config.tls_key, SSL_FILETYPE_PEM) != 1)
        return "TLS_KEY";
    if (SSL_CTX_check_private_key (context) != 1)
        return "TLS_KEY";
    return NULL;
}

const char *nearchat_sslshim (void);      //  sslshim.c

void
tls_check_settings (void)
{
    log_debug ("TLS through %s", nearchat_sslshim ());
    bool cert = *gateway_config.tls_cert, key = *gateway_config.tls_key;
    if (!cert && !key)
        return;
    if (!cert)
        s_bad ("TLS_CERT", "", "TLS_KEY is set: both or neither");
    if (!key)
        s_bad ("TLS_KEY", "", "TLS_CERT is set: both or neither");
    if (gateway_config.https_port == gateway_config.http_port)
        s_bad ("HTTPS_PORT", "", "must differ from HTTP_PORT");
    SSL_CTX *context = SSL_CTX_new (TLS_server_method ());
    if (!context) {
        fprintf (stderr, "gateway: OpenSSL cannot make a TLS context\n");
        exit (1);
    }
    const char *failed = s_load (context);
    SSL_CTX_free (context);
    if (failed)
        s_bad (failed, strcmp (failed, "TLS_CERT")? gateway_config.tls_key: gateway_config.tls_cert,
               strcmp (failed, "TLS_CERT")? "no PEM private key there that fits TLS_CERT"
                                          : "no PEM certificate there");
}

int
tls_init_context (void *ssl_context, void *user_data)
{
    (void) user_data;
    SSL_CTX *context = ssl_context;
    const char *failed = s_load (context);
    if (failed) {
        log_error ("TLS: %s did not load", failed);
        return -1;
    }
    //  Nothing older than TLS 1.2.
    SSL_CTX_set_min_proto_version (context, TLS1_2_VERSION);
    return 1;
}
