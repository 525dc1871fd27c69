/*  =========================================================================
    utf8.c - UTF-8 validation and character counting (see utf8.h for why
    this is written here)
    =========================================================================
*/

#include <assert.h>
#include <string.h>
#include "utf8.h"

bool
utf8_valid (const char *s, size_t len)
{
    const unsigned char *byte = (const unsigned char *) s;
    size_t i = 0;
    while (i < len) {
        unsigned char lead = byte [i];
        if (lead == 0)
            return false;
        if (lead < 0x80) {
            i++;
            continue;
        }
        //  Sequence length and the range its second byte must fall in: these
        //  ranges are what exclude overlong forms (E0 80..9F, F0 80..8F),
        //  surrogates (ED A0..BF) and code points above U+10FFFF (F4 90..).
        size_t length;
        unsigned char low = 0x80, high = 0xBF;
        if (lead >= 0xC2 && lead <= 0xDF)
            length = 2;
        else
        if (lead >= 0xE0 && lead <= 0xEF) {
            length = 3;
            if (lead == 0xE0)
                low = 0xA0;
            if (lead == 0xED)
                high = 0x9F;
        }
        else
        if (lead >= 0xF0 && lead <= 0xF4) {
            length = 4;
            if (lead == 0xF0)
                low = 0x90;
            if (lead == 0xF4)
                high = 0x8F;
        }
        else
            return false;       //  continuation byte, C0, C1 or F5..FF
        if (len - i < length)
            return false;
        if (byte [i + 1] < low || byte [i + 1] > high)
            return false;
        for (size_t k = 2; k < length; k++)
            if (byte [i + k] < 0x80 || byte [i + k] > 0xBF)
                return false;
        i += length;
    }
    return true;
}

bool
utf8_has_control (const char *s, size_t len, bool allow_whitespace)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s [i];
        if (c < 0x20 || c == 0x7F) {
            if (allow_whitespace && (c == '\t' || c == '\n' || c == '\r'))
                continue;
            return true;
        }
    }
    return false;
}

size_t
utf8_chars (const char *s, size_t len)
{
    size_t chars = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char) s [i] & 0xC0) != 0x80)
            chars++;            //  every byte but a continuation starts one
    return chars;
}

void
utf8_test (bool verbose)
{
    (void) verbose;
    #define VALID(literal)    assert (utf8_valid (literal, sizeof literal - 1))
    #define INVALID(literal)  assert (!utf8_valid (literal, sizeof literal - 1))
    VALID ("");
    VALID ("hello, road 66");
    VALID ("caf\xc3\xa9");                  //  é
    VALID ("\xe2\x82\xac");                 //  €
    VALID ("\xf0\x9f\x9a\x97");             //  🚗
    VALID ("\xf4\x8f\xbf\xbf");             //  U+10FFFF
    VALID ("\xed\x9f\xbf");                 //  U+D7FF, just below the surrogates
    INVALID ("\x80");                       //  lone continuation
    INVALID ("\xc3");                       //  truncated
    INVALID ("\xe2\x82");                   //  truncated
    INVALID ("\xc0\xaf");                   //  overlong '/'
    INVALID ("\xc1\xbf");                   //  overlong
    INVALID ("\xe0\x80\xaf");               //  overlong
    INVALID ("\xf0\x80\x80\xaf");           //  overlong
    INVALID ("\xed\xa0\x80");               //  surrogate U+D800
    INVALID ("\xf4\x90\x80\x80");           //  above U+10FFFF
    INVALID ("\xf5\x80\x80\x80");
    INVALID ("\xff");
    INVALID ("\xc3\x28");                   //  bad continuation
    INVALID ("a\0b");                       //  NUL
    assert (utf8_chars ("caf\xc3\xa9", 5) == 4);
    assert (utf8_chars ("\xf0\x9f\x9a\x97!", 5) == 2);
    assert (utf8_chars ("", 0) == 0);
    assert (!utf8_has_control ("plain text", 10, false));
    assert (utf8_has_control ("tab\there", 8, false));
    assert (!utf8_has_control ("tab\there\r\n", 10, true));
    assert (utf8_has_control ("bell\a", 5, true));
    assert (utf8_has_control ("del\x7f", 4, true));
    #undef VALID
    #undef INVALID
}
