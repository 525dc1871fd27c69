/*  =========================================================================
    test_tls - HTTPS and WSS with TLS_CERT and TLS_KEY, against the real
    system (stored, gateway, 1 shard), with a certificate made for the test

    curl, checking the certificate against the one made here, gets /healthz
    over https, which advertises wss:// (ws:// over plain HTTP, and wss://
    when X-Forwarded-Proto says https); the plain HTTP port keeps working
    and the TLS port does not speak plain HTTP; a user on wss:// and one on
    ws:// chat in one room;
    a certificate without its key, or a key that is not the certificate's,
    stops the gateway with exit status 2 and the setting's name.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"
#include "harness_system.h"

static harness_system_t s_system;
static char s_cert [PATH_MAX], s_key [PATH_MAX], s_other_key [PATH_MAX];
static int s_https_port;

//  A self-signed certificate for 127.0.0.1 and its key, and a key of no
//  certificate, made with the openssl tool. Returns 0 or -1.
static int
s_make_certificate (void)
{
    snprintf (s_cert, sizeof s_cert, "%s/cert.pem", harness_dir ());
    snprintf (s_key, sizeof s_key, "%s/key.pem", harness_dir ());
    snprintf (s_other_key, sizeof s_other_key, "%s/other-key.pem", harness_dir ());
    char command [4 * PATH_MAX];
    snprintf (command, sizeof command,
              "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
              "-addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' 2>/dev/null && "
              "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '%s' 2>/dev/null",
              s_key, s_cert, s_other_key);
    return system (command) == 0? 0: -1;
}

static void
s_test_https (void)
{
    printf ("https: curl checks our certificate and gets /healthz\n");
    char command [2 * PATH_MAX];
    snprintf (command, sizeof command,
              "curl -sS -m 10 --cacert '%s' -o /dev/null -w '%%{http_code}' "
              "https://127.0.0.1:%d/healthz", s_cert, s_https_port);
    FILE *curl = popen (command, "r");
    REQUIRE (curl);
    char code [16] = "";
    CHECK (fgets (code, sizeof code, curl) != NULL);
    CHECK (pclose (curl) == 0);
    if (!CHECK (strcmp (code, "200") == 0))
        fprintf (stderr, "  curl said %s\n", code);

    printf ("https and http side by side, each advertising its own WebSocket scheme; "
            "the TLS port speaks no plain HTTP\n");
    http_response_t response;
    char url [128];
    CHECK (https_request (s_https_port, "GET", "/healthz", NULL, 0, &response) == 200);
    json_t *health = json_loads (response.body, 0, NULL);
    CHECK (j_is (health, "status", "ok"));
    snprintf (url, sizeof url, "wss://127.0.0.1:%d/ws", s_https_port);
    CHECK (j_is (health, "websocketEndpoint", url));
    json_decref (health);
    http_response_free (&response);
    CHECK (http_request (s_system.http_port, "GET", "/healthz", NULL, 0, &response) == 200);
    health = json_loads (response.body, 0, NULL);
    snprintf (url, sizeof url, "ws://127.0.0.1:%d/ws", s_system.http_port);
    CHECK (j_is (health, "websocketEndpoint", url));
    json_decref (health);
    http_response_free (&response);
    //  Behind an edge that ended TLS (HAProxy), plain HTTP that says so.
    CHECK (http_request_with (s_system.http_port, "GET", "/healthz", "X-Forwarded-Proto: https\r\n",
                              NULL, 0, &response) == 200);
    health = json_loads (response.body, 0, NULL);
    snprintf (url, sizeof url, "wss://127.0.0.1:%d/ws", s_system.http_port);
    CHECK (j_is (health, "websocketEndpoint", url));
    json_decref (health);
    http_response_free (&response);
    CHECK (http_request (s_https_port, "GET", "/healthz", NULL, 0, &response) != 200);
    http_response_free (&response);
}

static void
s_test_wss (void)
{
    printf ("wss and ws users chat in one room\n");
    const char *room = api_create_room (s_system.http_port, "tess", 30, 30, NULL, 0);
    REQUIRE (room);
    ws_client_t *tess = ws_open_tls (s_https_port, "/ws?userId=tess");
    ws_client_t *ward = api_connect (s_system.http_port, "ward", NULL);
    REQUIRE (tess && ward);
    json_decref (api_join (tess, room, "tess", -1));
    json_decref (api_join (ward, room, "ward", -1));
    CHECK (api_say (tess, room, "s-1", "over tls") > 0);
    CHECK (api_heard (ward, "over tls") > 0);
    CHECK (api_say (ward, room, "s-2", "in the clear") > 0);
    CHECK (api_heard (tess, "in the clear") > 0);
    ws_close (&tess);
    ws_close (&ward);
}

static void
s_test_bad_settings (void)
{
    printf ("a certificate without its key, or with a wrong one, exits 2\n");
    char cert [PATH_MAX + 16], key [PATH_MAX + 16], other [PATH_MAX + 16];
    snprintf (cert, sizeof cert, "TLS_CERT=%s", s_cert);
    snprintf (key, sizeof key, "TLS_KEY=%s", s_key);
    snprintf (other, sizeof other, "TLS_KEY=%s", s_other_key);
    char output [1024];
    const char *alone [] = { cert, NULL };
    CHECK (harness_run ("gateway", alone, NULL, output, sizeof output) == 2);
    CHECK (strstr (output, "TLS_KEY") != NULL);
    const char *wrong [] = { cert, other, NULL };
    CHECK (harness_run ("gateway", wrong, NULL, output, sizeof output) == 2);
    CHECK (strstr (output, "TLS_KEY") != NULL);
    const char *swapped [] = { "TLS_CERT=/nonexistent/cert.pem", key, NULL };
    CHECK (harness_run ("gateway", swapped, NULL, output, sizeof output) == 2);
    CHECK (strstr (output, "TLS_CERT") != NULL);
}

int
main (void)
{
    harness_init ("tls");
    REQUIRE (s_make_certificate () == 0);
    s_https_port = harness_free_port ();
    char cert [PATH_MAX + 16], key [PATH_MAX + 16], port [32];
    snprintf (cert, sizeof cert, "TLS_CERT=%s", s_cert);
    snprintf (key, sizeof key, "TLS_KEY=%s", s_key);
    snprintf (port, sizeof port, "HTTPS_PORT=%d", s_https_port);
    const char *env [] = { cert, key, port, NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    s_test_https ();
    s_test_wss ();
    s_test_bad_settings ();
    return harness_finish ();
}
