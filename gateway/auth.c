/*  =========================================================================
    auth.c - who a client is: AUTH=none trusts it, AUTH=jwt checks a token

    With AUTH=none (the default, so the original clients work unchanged)
    the user id is whatever the query or body says, as the original had
    it. With AUTH=jwt it is the `sub` of a signed token (libjwt): HS256
    with JWT_SECRET, or RS256 / ES256 with JWT_PUBLIC_KEY (a PEM file).

    The algorithm is the key's, never the token's choice: libjwt verifies
    with whatever algorithm the token's header names, so an HS256 token
    would be checked with the public key's PEM text as its HMAC secret
    (the classic confusion attack: that PEM is public), and "none" would
    need no signature. So a token whose alg is not the one the key allows
    is refused, whatever its signature.

    libjwt 1.10 (Debian 12) does not look at the times: exp and nbf are
    checked here, with AUTH_LEEWAY_S of slack for clocks that drift.
    =========================================================================
*/

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include "gateway.h"
#include "log.h"

#define AUTH_LEEWAY_S       30          //  exp and nbf are honoured this loosely
#define AUTH_SECRET_MIN     32          //  RFC 7518 3.2: an HS256 key of at least 256 bits
#define AUTH_PEM_MAX        (64 * 1024)

static bool s_required;                 //  AUTH=jwt
static jwt_alg_t s_alg;                 //  the one algorithm the key allows
static unsigned char *s_key;            //  the secret, or the PEM text
static size_t s_key_size;

static void
s_bad (const char *name, const char *value, const char *why)
{
    fprintf (stderr, "gateway: bad value for %s: '%s' (%s)\n", name, value, why);
    exit (2);
}

//  The PEM's key type decides the algorithm: RSA is RS256, P-256 is ES256.
static jwt_alg_t
s_pem_alg (const char *path, const unsigned char *pem, size_t size)
{
    BIO *bio = BIO_new_mem_buf (pem, (int) size);
    EVP_PKEY *key = bio? PEM_read_bio_PUBKEY (bio, NULL, NULL, NULL): NULL;
    BIO_free (bio);
    if (!key)
        s_bad ("JWT_PUBLIC_KEY", path, "not a PEM public key (BEGIN PUBLIC KEY)");
    jwt_alg_t alg = JWT_ALG_INVAL;
    if (EVP_PKEY_base_id (key) == EVP_PKEY_RSA && EVP_PKEY_bits (key) >= 2048)
        alg = JWT_ALG_RS256;
    else
    if (EVP_PKEY_base_id (key) == EVP_PKEY_EC && EVP_PKEY_bits (key) == 256)
        alg = JWT_ALG_ES256;
    EVP_PKEY_free (key);
    if (alg == JWT_ALG_INVAL)
        s_bad ("JWT_PUBLIC_KEY", path, "must be an RSA key of 2048 bits or more (RS256) "
               "or an EC P-256 key (ES256)");
    return alg;
}

void
auth_check_settings (void)
{
    const char *mode = gateway_config.auth;
    const char *secret = gateway_config.jwt_secret, *path = gateway_config.jwt_public_key;
    //  A secret's value is never echoed: only whether it is set.
    if (strcmp (mode, "none") == 0) {
        if (*secret || *path)
            s_bad ("AUTH", mode, "JWT_SECRET or JWT_PUBLIC_KEY is set: set AUTH=jwt to use it, "
                   "or unset it");
        return;
    }
    if (strcmp (mode, "jwt") != 0)
        s_bad ("AUTH", mode, "must be none or jwt");
    if (!*secret && !*path)
        s_bad ("AUTH", mode, "jwt needs JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256, ES256)");
    if (*secret && *path)
        s_bad ("AUTH", mode, "set JWT_SECRET or JWT_PUBLIC_KEY, not both");
    if (*secret) {
        if (strlen (secret) < AUTH_SECRET_MIN)
            s_bad ("JWT_SECRET", "(hidden)", "must be at least 32 bytes; openssl rand -hex 32 makes one");
        s_key_size = strlen (secret);
        s_key = (unsigned char *) strdup (secret);
        s_alg = JWT_ALG_HS256;
    }
    else {
        FILE *file = fopen (path, "rb");
        if (!file)
            s_bad ("JWT_PUBLIC_KEY", path, strerror (errno));
        s_key = malloc (AUTH_PEM_MAX + 1);
        s_key_size = s_key? fread (s_key, 1, AUTH_PEM_MAX + 1, file): 0;
        bool failed = ferror (file);
        fclose (file);
        if (!s_key || failed || s_key_size == 0 || s_key_size > AUTH_PEM_MAX)
            s_bad ("JWT_PUBLIC_KEY", path, "cannot be read, or is empty or over 64 KiB");
        s_key [s_key_size] = 0;
        s_alg = s_pem_alg (path, s_key, s_key_size);
    }
    s_required = true;
}

bool
auth_required (void)
{
    return s_required;
}

const char *
auth_mode (void)
{
    return s_required? "jwt": "none";
}

void
auth_log_start (void)
{
    if (s_required)
        log_info ("AUTH=jwt: clients are who their %s token's sub says",
                  jwt_alg_str (s_alg));
    else
        log_warn ("AUTH=none: the user id is whatever a client says, so anyone can act "
                  "as anyone; set AUTH=jwt before exposing this gateway");
}

//  A time claim of jwt's into out: 1, 0 when it is absent, -1 when it is
//  no whole number. jwt_get_grant_int cannot tell: it reads a string or a
//  real as 0, which as an nbf would pass.
static int
s_time_claim (jwt_t *jwt, const char *name, long *out)
{
    char *text = jwt_get_grants_json (jwt, name);
    if (!text)
        return 0;
    json_t *value = json_loads (text, JSON_DECODE_ANY, NULL);
    free (text);
    int rc = json_is_integer (value)? 1: -1;
    if (rc == 1)
        *out = (long) json_integer_value (value);
    json_decref (value);
    return rc;
}

int
auth_verify (const char *token, char *user_id, char *why, size_t why_size)
{
    if (!token || !*token) {
        snprintf (why, why_size, "a token is required");
        return 401;
    }
    jwt_t *jwt = NULL;
    if (jwt_decode (&jwt, token, s_key, (int) s_key_size) || !jwt) {
        snprintf (why, why_size, "the token is not valid");
        return 401;
    }
    int status = 401;
    time_t now = time (NULL);
    jwt_alg_t alg = jwt_get_alg (jwt);
    long expires = 0, not_before = 0;
    int has_exp = s_time_claim (jwt, "exp", &expires);
    int has_nbf = s_time_claim (jwt, "nbf", &not_before);
    const char *subject = jwt_get_grant (jwt, "sub");
    char sub_why [160];
    if (alg != s_alg)
        snprintf (why, why_size, "the token must be signed with %s, not %s", jwt_alg_str (s_alg),
                  jwt_alg_str (alg)? jwt_alg_str (alg): "an unknown algorithm");
    else
    if (has_exp < 0 || has_nbf < 0)
        snprintf (why, why_size, "the token's exp and nbf must be whole numbers of seconds");
    else
    if (has_exp && now > (time_t) expires + AUTH_LEEWAY_S)
        snprintf (why, why_size, "the token has expired");
    else
    if (has_nbf && now + AUTH_LEEWAY_S < (time_t) not_before)
        snprintf (why, why_size, "the token is not valid yet");
    else
    if (!subject || !*subject)
        snprintf (why, why_size, "the token has no sub");
    else
    if (strlen (subject) > PROTO_ID_MAX || input_text_id (subject, sub_why, sizeof sub_why, "sub"))
        snprintf (why, why_size, "the token's sub is not a valid user id");
    else {
        snprintf (user_id, PROTO_ID_MAX + 1, "%s", subject);
        status = 0;
    }
    jwt_free (jwt);
    return status;
}

int
auth_claim (const char *subject, const char *claimed, char *why, size_t why_size)
{
    if (!s_required || !claimed || strcmp (claimed, subject) == 0)
        return 0;
    snprintf (why, why_size, "userId must be the token's user (sub) or absent");
    return 403;
}

int
auth_http (struct mg_connection *mg, char *user_id, char *why, size_t why_size)
{
    *user_id = 0;
    if (!s_required)
        return 0;
    const char *header = mg_get_header (mg, "Authorization");
    if (!header || strncasecmp (header, "Bearer ", 7) != 0) {
        snprintf (why, why_size, "an Authorization: Bearer token is required");
        return 401;
    }
    const char *token = header + 7;
    while (*token == ' ')
        token++;
    return auth_verify (token, user_id, why, why_size);
}

int
auth_query (const char *query, char *user_id, char *why, size_t why_size)
{
    //  On the heap: civetweb's threads have small stacks, and their static
    //  TLS is carved out of them too.
    char *token = malloc (AUTH_TOKEN_MAX + 1);
    if (!token) {
        snprintf (why, why_size, "out of memory");
        return 503;
    }
    size_t length = strlen (query);
    int rc = mg_get_var (query, length, "token", token, AUTH_TOKEN_MAX + 1);
    int status = 0;
    if (rc == -1 || (rc == 0 && !*token)) {
        snprintf (why, why_size, "a token is required in the query string (?token=)");
        status = 401;
    }
    else
    if (rc < 0) {
        snprintf (why, why_size, "the token may be at most %d bytes", AUTH_TOKEN_MAX);
        status = 401;
    }
    else
        status = auth_verify (token, user_id, why, why_size);
    free (token);
    if (status)
        return status;
    char claimed [PROTO_ID_MAX + 2];
    rc = mg_get_var (query, length, "userId", claimed, sizeof claimed);
    if (rc == -2)                       //  too long to be anyone's
        return auth_claim (user_id, "", why, why_size);
    return rc > 0? auth_claim (user_id, claimed, why, why_size): 0;
}

bool
auth_may_read (const proto_room_t *room, const char *user_id)
{
    if (!s_required || room->room_type != PROTO_ROOM_PRIVATE)
        return true;
    for (uint32_t i = 0; i < room->participant_count; i++)
        if (strcmp (room->participants [i], user_id) == 0)
            return true;
    return false;
}
