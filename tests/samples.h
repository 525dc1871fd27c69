/*  =========================================================================
    samples.h - one message of every type, full (every field set) or
    minimal (required fields only), for the codec tests and the fuzz seeds
    =========================================================================
*/

#ifndef NEARCHAT_SAMPLES_H_INCLUDED
#define NEARCHAT_SAMPLES_H_INCLUDED

#include "proto.h"

//  Fill msg with a sample of type. Returns false if type is no message type.
//  Pointers refer to static storage, valid until the next call.
bool samples_message (int type, bool full, proto_msg_t *msg);
proto_room_t samples_room (bool full);
proto_message_t samples_record_message (bool full);
proto_connection_t samples_connection (bool full);

#endif
