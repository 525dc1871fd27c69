/*  =========================================================================
    test_gateway_twins - two live gateways given one GATEWAY_ID (a copied
    configuration, as two shards with one SHARD_ID are refused): against
    the real system

    Each run's first beat declares the id's other runs dead; the other
    one's next beat is refused (410), it closes every socket with 1012 and
    begins a new run, whose first beat declares the first dead, and so on.
    A misconfiguration must not close every socket of both gateways, again
    and again: sockets on either stay open while nothing else happens.
    =========================================================================
*/

#include <stdio.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"

int
main (void)
{
    harness_init ("gateway_twins");
    printf ("two live gateways with GATEWAY_ID=gw-twin: their sockets stay open\n");
    static harness_system_t sys;
    const char *env [] = { "GATEWAY_ID=gw-twin", NULL };
    REQUIRE (harness_system_start_many (&sys, 2, 1, false, env) == 0);
    const char *room = api_create_room (sys.http_ports [0], "ann", 44, 44, NULL, 0);
    REQUIRE (room);
    ws_client_t *ann = api_connect (sys.http_ports [0], "ann", "Ann");
    ws_client_t *ben = api_connect (sys.http_ports [1], "ben", "Ben");
    json_decref (api_join (ann, room, "ann", -1));
    json_decref (api_join (ben, room, "ben", -1));
    //  A few beats of each (one a second).
    sleep (5);
    CHECK (!ws_is_closed (ann, 0));
    CHECK (!ws_is_closed (ben, 0));
    if (!ws_is_closed (ann, 0) && !ws_is_closed (ben, 0)) {
        CHECK (api_say (ann, room, "ann-1", "still here?") == 1);
        CHECK (api_heard (ben, "still here?") == 1);
    }
    ws_close (&ann);
    ws_close (&ben);
    return harness_finish ();
}
