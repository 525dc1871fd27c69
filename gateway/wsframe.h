/*  =========================================================================
    wsframe.h - the names of WebSocket opcodes and close statuses

    The framing itself is wslay's (Debian's libwslay-dev): the loop reads
    client messages through wsin.c and output.c frames what it writes.
    These names are what the rest of the gateway says about frames.
    =========================================================================
*/

#ifndef NEARCHAT_GATEWAY_WSFRAME_H_INCLUDED
#define NEARCHAT_GATEWAY_WSFRAME_H_INCLUDED

#include <wslay/wslay.h>

enum {
    WSFRAME_CONTINUATION = WSLAY_CONTINUATION_FRAME,
    WSFRAME_TEXT         = WSLAY_TEXT_FRAME,
    WSFRAME_BINARY       = WSLAY_BINARY_FRAME,
    WSFRAME_CLOSE        = WSLAY_CONNECTION_CLOSE,
    WSFRAME_PING         = WSLAY_PING,
    WSFRAME_PONG         = WSLAY_PONG
};

//  Close statuses (RFC 6455 section 7.4.1).
enum {
    WSFRAME_NORMAL       = 1000,
    WSFRAME_GOING_AWAY   = 1001,
    WSFRAME_PROTOCOL     = 1002,
    WSFRAME_POLICY       = 1008,        //  a slow reader, dropped
    WSFRAME_TOO_BIG      = 1009,
    WSFRAME_INTERNAL     = 1011,        //  missed messages could not be read: rejoin
    WSFRAME_RESTART      = 1012         //  service restart: reconnect
};

#endif
