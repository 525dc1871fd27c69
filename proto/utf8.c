/*  =========================================================================
    utf8.c - UTF-8 validation and character counting (see utf8.h for why
    this is written here)
    =========================================================================
*/

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "utf8.h"

//  Every string is checked at every process it crosses (a message's text
//  five times on its way to a socket), and almost every byte is ASCII, so
//  both checks take eight bytes at a time while they are plain: a word
//  test (the bit tricks of "Bit Twiddling Hacks", hasless and haszero)
//  says whether any of its bytes needs the byte-by-byte rules.
#define ONES    0x0101010101010101ULL
#define HIGHS   0x8080808080808080ULL

static inline uint64_t
s_word (const unsigned char *at)
{
    uint64_t word;
    memcpy (&word, at, sizeof word);
    return word;
}

//  Some byte of word is below n (n at most 128), or is 128 or above.
static inline bool
s_has_below_or_high (uint64_t word, uint64_t n)
{
    return ((word - ONES * n) | word) & HIGHS;
}

bool
utf8_valid (const char *s, size_t len)
{
    const unsigned char *byte = (const unsigned char *) s;
    size_t i = 0;
    while (i < len) {
        //  Eight plain bytes (1..127) at a time.
        while (len - i >= 8 && !s_has_below_or_high (s_word (byte + i), 1))
            i += 8;
        if (i == len)
            break;
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
    const unsigned char *byte = (const unsigned char *) s;
    size_t i = 0;
    //  Words with no byte below 0x20 and no DEL (a byte of 128 or above
    //  is neither, but the word test cannot tell it from one: such a word
    //  is looked at byte by byte).
    while (len - i >= 8) {
        uint64_t word = s_word (byte + i);
        if (s_has_below_or_high (word, 0x20) || s_has_below_or_high (word ^ (ONES * 0x7F), 1))
            break;
        i += 8;
    }
    for (; i < len; i++) {
        unsigned char c = byte [i];
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
    assert (utf8_has_control ("a longer line of text\x7f", 22, true));
    assert (!utf8_has_control ("a longer line of text, caf\xc3\xa9", 28, false));
    assert (utf8_has_control ("a longer line of text, caf\xc3\xa9\x01", 29, true));
    //  The word-at-a-time paths agree with a byte-by-byte reading, on
    //  random strings that mix plain text with every kind of byte.
    srandom (66);
    for (int round = 0; round < 20000; round++) {
        unsigned char text [40];
        size_t length = (size_t) (random () % 40);
        for (size_t i = 0; i < length; i++) {
            long kind = random () % 16;
            text [i] = kind < 12? (unsigned char) (0x20 + random () % 95)
                     : kind < 15? (unsigned char) (random () % 256)
                     : (unsigned char) "\t\n\x7f\x01\xc3\xa9\xe2\x82\xac" [random () % 9];
        }
        bool control = false, control_ws = false;
        for (size_t i = 0; i < length; i++)
            if (text [i] < 0x20 || text [i] == 0x7F) {
                control = true;
                if (text [i] != '\t' && text [i] != '\n' && text [i] != '\r')
                    control_ws = true;
            }
        assert (utf8_has_control ((char *) text, length, false) == control);
        assert (utf8_has_control ((char *) text, length, true) == control_ws);
        //  utf8_valid against itself a byte at a time: each prefix of a
        //  valid string that ends on a boundary is valid.
        bool valid = utf8_valid ((char *) text, length);
        if (valid)
            for (size_t cut = 0; cut <= length; cut++)
                if (cut == length || (text [cut] & 0xC0) != 0x80)
                    assert (utf8_valid ((char *) text, cut));
    }
    #undef VALID
    #undef INVALID
}
