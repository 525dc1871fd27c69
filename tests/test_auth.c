/*  =========================================================================
    test_auth - AUTH=jwt against the real system: who a client is comes
    from its token, never from what it says

    The token matrix on HTTP (Authorization: Bearer) and on the WebSocket
    upgrade (?token=): none, valid, expired, not yet valid, wrong key, alg
    none, a userId that is not the token's sub; a private room's history,
    online list and room-info for its participants only (403, then 200
    once joined by id) and never in search. Once with HS256 (JWT_SECRET),
    once with ES256 (JWT_PUBLIC_KEY, a key pair made here with openssl),
    and briefly with RS256; with a public key, an HS256 token signed with
    its PEM text (the classic confusion attack) is refused too. And the settings that make
    no sense exit 2. The tokens are made here with libjwt.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jwt.h>
#include "api.h"
#include "harness_system.h"

#define SECRET      "test-secret-0123456789abcdef0123456789abcdef"
#define OTHER       "another-secret-0123456789abcdef0123456789ab"
#define HOUR        3600

static harness_system_t s_system;
static int s_port;

//  A token's signing: its algorithm and key.
typedef struct {
    jwt_alg_t alg;
    const unsigned char *key;
    size_t size;
} signer_t;

//  A token of sub signed by signer; exp and nbf relative to now (0: no
//  such claim). Static storage, a ring of 16.
static const char *
s_token (const signer_t *signer, const char *sub, long exp, long nbf)
{
    static char *ring [16];
    static size_t next;
    jwt_t *jwt = NULL;
    REQUIRE (jwt_new (&jwt) == 0);
    REQUIRE (jwt_set_alg (jwt, signer->alg, signer->key, (int) signer->size) == 0);
    if (sub)
        jwt_add_grant (jwt, "sub", sub);
    long now = (long) time (NULL);
    if (exp)
        jwt_add_grant_int (jwt, "exp", now + exp);
    if (nbf)
        jwt_add_grant_int (jwt, "nbf", now + nbf);
    char *token = jwt_encode_str (jwt);
    jwt_free (jwt);
    REQUIRE (token);
    free (ring [next]);
    ring [next] = token;
    next = (next + 1) % 16;
    return token;
}

//  A token of the claims (JSON text) signed by signer, as s_token.
static const char *
s_token_json (const signer_t *signer, const char *claims)
{
    static char *ring [4];
    static size_t next;
    jwt_t *jwt = NULL;
    REQUIRE (jwt_new (&jwt) == 0);
    REQUIRE (jwt_set_alg (jwt, signer->alg, signer->key, (int) signer->size) == 0);
    REQUIRE (jwt_add_grants_json (jwt, claims) == 0);
    char *token = jwt_encode_str (jwt);
    jwt_free (jwt);
    REQUIRE (token);
    free (ring [next]);
    ring [next] = token;
    next = (next + 1) % 4;
    return token;
}

//  One request as token's user (NULL: no Authorization); the status, and
//  the body parsed into *out when out is not NULL. CHECKs JSON and CORS,
//  and {"error"} on an error status, as http_call does.
static int
s_http (const char *method, const char *path, const char *token, const char *body, json_t **out)
{
    char headers [9000] = "";
    if (token)
        snprintf (headers, sizeof headers, "Authorization: Bearer %s\r\n", token);
    if (body)
        strcat (headers, "Content-Type: application/json\r\n");
    http_response_t response;
    int status = http_request_with (s_port, method, path, headers, body,
                                    body? strlen (body): 0, &response);
    json_t *json = json_loads (response.body? response.body: "", 0, NULL);
    CHECK (strstr (response.content_type, "application/json") != NULL);
    CHECK (!strcmp (response.allow_origin, "*"));
    if (status >= 400 && !(j_str (json, "error") && *j_str (json, "error"))) {
        fprintf (stderr, "  %s %s: %d without {\"error\"}: %.200s\n", method, path, status,
                 response.body);
        CHECK (false);
    }
    http_response_free (&response);
    if (out)
        *out = json;
    else
        json_decref (json);
    return status;
}

//  POST /rooms as token's user with userId user (NULL: none) and type.
static int
s_create (const char *token, const char *user, const char *type, char *room_id)
{
    json_t *body = json_pack ("{s:f, s:f, s:s}", "latitude", 48.8566, "longitude", 2.3522,
                              "roomType", type);
    if (user)
        json_object_set_new (body, "userId", json_string (user));
    char *text = json_dumps (body, 0);
    json_decref (body);
    json_t *answer = NULL;
    int status = s_http ("POST", "/rooms", token, text, &answer);
    free (text);
    if (room_id)
        snprintf (room_id, 64, "%s", j_str (answer, "roomId")? j_str (answer, "roomId"): "");
    json_decref (answer);
    return status;
}

//  The WebSocket handshake's status for a query, and its body's error.
static int
s_upgrade (const char *query)
{
    char path [9000], body [512] = "";
    snprintf (path, sizeof path, "/ws?%s", query);
    int status = 0;
    ws_raw_t *raw = ws_raw_try (s_port, path, &status, body, sizeof body);
    if (raw)
        ws_raw_close (&raw);
    else
    if (!strstr (body, "\"error\"")) {
        fprintf (stderr, "  upgrade ?%.60s: %d without {\"error\"}: %s\n", query, status, body);
        CHECK (false);
    }
    return status;
}

static ws_client_t *
s_connect (const char *token)
{
    char path [9000];
    snprintf (path, sizeof path, "/ws?token=%s", token);
    return ws_open (s_port, path);
}

//  The answer of a room-info action: "room-info", or the error's status.
static int
s_room_info_ws (ws_client_t *client, const char *room_id)
{
    ws_send (client, "{s:s, s:s, s:s}", "action", "room-info", "roomId", room_id,
             "requestId", "info");
    json_t *frame = ws_expect_either (client, "room-info", NULL, NULL, "error", "requestId", "info",
                                      API_WAIT_MS);
    const char *type = j_str (frame, "type");
    int status = !type? -1: !strcmp (type, "room-info")? 200: (int) j_num (frame, "status");
    json_decref (frame);
    return status;
}

static void
s_start (const char *setting)
{
    const char *env [] = { "AUTH=jwt", setting, NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    s_port = s_system.http_port;
    json_t *health = NULL;
    CHECK (api_health (s_port, &health) == 200);
    CHECK (j_is (health, "auth", "jwt"));
    json_decref (health);
}

//  The matrix every key must pass: good signs good, bad its forgeries.
static void
s_test_matrix (const signer_t *good, const signer_t *wrong, const char *name)
{
    printf ("%s: tokens on HTTP\n", name);
    signer_t none = { JWT_ALG_NONE, NULL, 0 };
    const char *alice = s_token (good, "alice", HOUR, 0);
    const char *bob = s_token (good, "bob", HOUR, -60);
    CHECK (s_create (NULL, "alice", "public", NULL) == 401);
    CHECK (s_create ("not.a.token", "alice", "public", NULL) == 401);
    CHECK (s_create (s_token (good, "alice", -HOUR, 0), "alice", "public", NULL) == 401);
    CHECK (s_create (s_token (good, "alice", HOUR, HOUR), "alice", "public", NULL) == 401);
    CHECK (s_create (s_token (wrong, "alice", HOUR, 0), "alice", "public", NULL) == 401);
    CHECK (s_create (s_token (&none, "alice", HOUR, 0), "alice", "public", NULL) == 401);
    CHECK (s_create (s_token (good, NULL, HOUR, 0), NULL, "public", NULL) == 401);
    CHECK (s_create (alice, "bob", "public", NULL) == 403);
    //  exp and nbf are optional, but one that is no time is no pass.
    CHECK (s_create (s_token (good, "alice", 0, 0), NULL, "public", NULL) == 200);
    CHECK (s_create (s_token_json (good, "{\"sub\":\"alice\",\"exp\":\"never\"}"), NULL,
                     "public", NULL) == 401);
    CHECK (s_create (s_token_json (good, "{\"sub\":\"alice\",\"nbf\":\"now\"}"), NULL,
                     "public", NULL) == 401);
    CHECK (s_create (s_token_json (good, "{\"sub\":42}"), NULL, "public", NULL) == 401);
    char open_room [64], secret_room [64], path [256];
    CHECK (s_create (alice, "alice", "public", open_room) == 200);
    CHECK (s_create (alice, NULL, "private", secret_room) == 200);

    //  The room is the token's user's, not the body's.
    json_t *info = NULL;
    snprintf (path, sizeof path, "/rooms/%s", secret_room);
    CHECK (s_http ("GET", path, alice, NULL, &info) == 200);
    CHECK (j_is (info, "creator", "alice"));
    json_decref (info);
    CHECK (s_http ("GET", path, NULL, NULL, NULL) == 401);
    CHECK (s_http ("GET", path, bob, NULL, NULL) == 403);
    snprintf (path, sizeof path, "/rooms/%s?userId=alice", secret_room);
    CHECK (s_http ("GET", path, bob, NULL, NULL) == 403);

    //  Search lists the public room, never the private one.
    json_t *rooms = NULL;
    CHECK (s_http ("GET", "/rooms?latitude=48.8566&longitude=2.3522", bob, NULL, &rooms) == 200);
    bool listed = false, hidden = true;
    for (size_t i = 0; i < json_array_size (rooms); i++) {
        const char *id = j_str (json_array_get (rooms, i), "id");
        listed |= id && !strcmp (id, open_room);
        hidden &= !id || strcmp (id, secret_room) != 0;
    }
    CHECK (listed && hidden);
    json_decref (rooms);
    CHECK (s_http ("GET", "/rooms?latitude=48.8566&longitude=2.3522&roomType=private", alice,
                   NULL, &rooms) == 200);
    CHECK (json_is_array (rooms) && json_array_size (rooms) == 0);
    json_decref (rooms);

    printf ("%s: tokens on the WebSocket upgrade\n", name);
    char query [9000];
    CHECK (s_upgrade ("userId=alice") == 401);
    CHECK (s_upgrade ("token=not.a.token") == 401);
    snprintf (query, sizeof query, "token=%s", s_token (good, "alice", -HOUR, 0));
    CHECK (s_upgrade (query) == 401);
    snprintf (query, sizeof query, "token=%s", s_token (good, "alice", HOUR, HOUR));
    CHECK (s_upgrade (query) == 401);
    snprintf (query, sizeof query, "token=%s", s_token (wrong, "alice", HOUR, 0));
    CHECK (s_upgrade (query) == 401);
    snprintf (query, sizeof query, "token=%s", s_token (&none, "alice", HOUR, 0));
    CHECK (s_upgrade (query) == 401);
    snprintf (query, sizeof query, "token=%s&userId=bob", alice);
    CHECK (s_upgrade (query) == 403);
    snprintf (query, sizeof query, "token=%s&userId=alice", alice);
    CHECK (s_upgrade (query) == 101);

    printf ("%s: a private room is for its participants\n", name);
    ws_client_t *a = s_connect (alice);
    ws_client_t *b = s_connect (bob);
    REQUIRE (a && b);
    json_decref (api_join (a, secret_room, "alice", -1));
    CHECK (api_say (a, secret_room, "m1", "for those invited") == 1);
    CHECK (s_room_info_ws (b, secret_room) == 403);
    CHECK (s_room_info_ws (a, secret_room) == 200);
    snprintf (path, sizeof path, "/rooms/%s/messages", secret_room);
    CHECK (s_http ("GET", path, bob, NULL, NULL) == 403);
    json_t *history = NULL;
    CHECK (s_http ("GET", path, alice, NULL, &history) == 200);
    CHECK (json_array_size (history) == 1 && j_is (json_array_get (history, 0), "userId", "alice"));
    json_decref (history);
    //  Its id is the invitation: bob joins, and may read from then on.
    char body [256];
    snprintf (body, sizeof body, "{\"roomId\":\"%s\",\"userId\":\"alice\"}", secret_room);
    CHECK (s_http ("POST", "/rooms/join", bob, body, NULL) == 403);
    snprintf (body, sizeof body, "{\"roomId\":\"%s\"}", secret_room);
    CHECK (s_http ("POST", "/rooms/join", bob, body, NULL) == 200);
    CHECK (s_http ("GET", path, bob, NULL, NULL) == 200);
    snprintf (path, sizeof path, "/rooms/%s", secret_room);
    json_t *online = NULL;
    CHECK (s_http ("GET", path, bob, NULL, &online) == 200);
    CHECK (j_holds_once (j_get (online, "online"), "alice"));
    json_decref (online);
    CHECK (s_room_info_ws (b, secret_room) == 200);

    //  Nobody closes alice's room by saying they are alice.
    snprintf (body, sizeof body, "{\"roomId\":\"%s\",\"userId\":\"alice\"}", open_room);
    CHECK (s_http ("POST", "/rooms/close", bob, body, NULL) == 403);
    snprintf (body, sizeof body, "{\"roomId\":\"%s\"}", open_room);
    CHECK (s_http ("POST", "/rooms/close", bob, body, NULL) == 403);
    CHECK (s_http ("POST", "/rooms/close", NULL, body, NULL) == 401);
    CHECK (s_http ("POST", "/rooms/close", alice, body, NULL) == 200);
    ws_close (&a);
    ws_close (&b);
}

//  Settings that make no sense stop the gateway with 2 and say which.
static void
s_test_settings (const char *pem)
{
    printf ("settings: bad combinations exit 2\n");
    char key [600], both [] = "JWT_SECRET=" SECRET;
    snprintf (key, sizeof key, "JWT_PUBLIC_KEY=%s", pem);
    struct { const char *env [4]; const char *named; } cases [] = {
        { { "AUTH=jwt", NULL }, "AUTH" },
        { { "AUTH=maybe", NULL }, "AUTH" },
        { { "AUTH=jwt", "JWT_SECRET=short", NULL }, "JWT_SECRET" },
        { { "AUTH=jwt", both, key, NULL }, "AUTH" },
        { { "AUTH=jwt", "JWT_PUBLIC_KEY=/nonexistent/key.pem", NULL }, "JWT_PUBLIC_KEY" },
        { { "AUTH=jwt", "JWT_PUBLIC_KEY=/etc/hostname", NULL }, "JWT_PUBLIC_KEY" },
        { { "AUTH=none", both, NULL }, "AUTH" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char output [1024] = "";
        int status = harness_run ("gateway", cases [i].env, NULL, output, sizeof output);
        CHECK (status == 2 && strstr (output, cases [i].named));
        CHECK (!strstr (output, "short"));         //  a secret is never echoed
        if (status != 2)
            fprintf (stderr, "  case %zu: exit %d: %s\n", i, status, output);
    }
    //  --check shows every setting, but not the secret.
    char command [1024];
    snprintf (command, sizeof command, "env AUTH=jwt JWT_SECRET=%s %s/gateway --check"
              " | grep -qx 'JWT_SECRET=(hidden)'", SECRET, NEARCHAT_BIN_DIR);
    CHECK (system (command) == 0);
}

static unsigned char *
s_read (const char *path, size_t *size)
{
    FILE *file = fopen (path, "rb");
    REQUIRE (file);
    static unsigned char buffers [8][8192];        //  every key the test reads
    static int next;
    unsigned char *buffer = buffers [next++ % 8];
    *size = fread (buffer, 1, sizeof buffers [0] - 1, file);
    buffer [*size] = 0;
    fclose (file);
    return buffer;
}

int
main (void)
{
    harness_init ("test_auth");

    signer_t hs = { JWT_ALG_HS256, (const unsigned char *) SECRET, strlen (SECRET) };
    signer_t hs_other = { JWT_ALG_HS256, (const unsigned char *) OTHER, strlen (OTHER) };
    s_start ("JWT_SECRET=" SECRET);
    s_test_matrix (&hs, &hs_other, "HS256");
    harness_system_stop (&s_system);

    //  An EC P-256 pair for the gateway, and another that is not its.
    char command [2048], pem [512], path [512];
    const char *dir = harness_dir ();
    snprintf (command, sizeof command,
              "cd '%s' && openssl ecparam -name prime256v1 -genkey -noout -out es.key 2>/dev/null"
              " && openssl ec -in es.key -pubout -out es.pub 2>/dev/null"
              " && openssl ecparam -name prime256v1 -genkey -noout -out other.key 2>/dev/null",
              dir);
    REQUIRE (system (command) == 0);
    snprintf (pem, sizeof pem, "%s/es.pub", dir);
    size_t size, other_size, public_size;
    snprintf (path, sizeof path, "%s/es.key", dir);
    unsigned char *private_key = s_read (path, &size);
    snprintf (path, sizeof path, "%s/other.key", dir);
    unsigned char *other_key = s_read (path, &other_size);
    signer_t es = { JWT_ALG_ES256, private_key, size };
    signer_t es_other = { JWT_ALG_ES256, other_key, other_size };
    char setting [600];
    snprintf (setting, sizeof setting, "JWT_PUBLIC_KEY=%s", pem);
    s_start (setting);
    s_test_matrix (&es, &es_other, "ES256");
    //  HS256 keyed with the public PEM itself: the signature is right, the
    //  algorithm is not the key's.
    printf ("ES256: an HS256 token keyed with the public key is refused\n");
    unsigned char *public_key = s_read (pem, &public_size);
    signer_t confused = { JWT_ALG_HS256, public_key, public_size };
    const char *forged = s_token (&confused, "alice", HOUR, 0);
    CHECK (s_create (forged, NULL, "public", NULL) == 401);
    snprintf (command, sizeof command, "token=%s", forged);
    CHECK (s_upgrade (command) == 401);
    harness_system_stop (&s_system);

    //  RS256: the RSA key's algorithm, and only it.
    printf ("RS256: its own tokens, not another key's nor HS256 keyed with it\n");
    snprintf (command, sizeof command,
              "cd '%s' && openssl genrsa -out rs.key 2048 2>/dev/null"
              " && openssl rsa -in rs.key -pubout -out rs.pub 2>/dev/null"
              " && openssl genrsa -out rs-other.key 2048 2>/dev/null", dir);
    REQUIRE (system (command) == 0);
    snprintf (path, sizeof path, "%s/rs.key", dir);
    signer_t rs = { JWT_ALG_RS256, s_read (path, &size), 0 };
    rs.size = size;
    snprintf (path, sizeof path, "%s/rs-other.key", dir);
    signer_t rs_other = { JWT_ALG_RS256, s_read (path, &other_size), 0 };
    rs_other.size = other_size;
    snprintf (setting, sizeof setting, "JWT_PUBLIC_KEY=%s/rs.pub", dir);
    s_start (setting);
    CHECK (s_create (s_token (&rs, "carol", HOUR, 0), NULL, "public", NULL) == 200);
    CHECK (s_create (s_token (&rs_other, "carol", HOUR, 0), NULL, "public", NULL) == 401);
    CHECK (s_create (s_token (&es, "carol", HOUR, 0), NULL, "public", NULL) == 401);
    snprintf (path, sizeof path, "%s/rs.pub", dir);
    signer_t rs_confused = { JWT_ALG_HS256, s_read (path, &size), 0 };
    rs_confused.size = size;
    CHECK (s_create (s_token (&rs_confused, "carol", HOUR, 0), NULL, "public", NULL) == 401);
    harness_system_stop (&s_system);

    s_test_settings (pem);
    return harness_finish ();
}
