/* usbgw simulated license-key protocol.
 *
 * Shared by the simulated dongles (tests/sim), the tiny guest's probe program
 * (tests/guest) and the tests that check answers. Plain C99, no dependencies:
 * it is compiled into a static guest binary too.
 *
 * Vendor-class key ("HASP-like", no iSerial):
 *   1. control OUT  bmRequestType 0x40, bRequest USBGW_KEY_REQ_CHALLENGE,
 *      wValue 0, wIndex 0, wLength 16: the host's challenge;
 *   2. control IN   bmRequestType 0xC0, bRequest USBGW_KEY_REQ_RESPONSE,
 *      wValue 0, wIndex 0, wLength 16: the key's response to the last
 *      challenge. Without a challenge the key STALLs.
 *
 * HID key ("driverless", with iSerial): the challenge is an output report
 * (SET_REPORT, bmRequestType 0x21, bRequest 0x09, wValue 0x0200, wIndex =
 * interface, 16 bytes); the response comes as the next 16-byte input report
 * on the interrupt IN endpoint.
 *
 * response = usbgw_key_compute(secret, challenge): a keyed mixing function,
 * so that two keys with different secrets answer differently. It is a test
 * fixture, not cryptography.
 */
#pragma once

#include <stdint.h>
#include <string.h>

#define USBGW_KEY_REQ_CHALLENGE 0x01
#define USBGW_KEY_REQ_RESPONSE  0x02
#define USBGW_KEY_LEN           16

static inline uint32_t
usbgw_key_rotl(uint32_t v, int n)
{
    return (v << n) | (v >> (32 - n));
}

static inline uint32_t
usbgw_key_load32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void
usbgw_key_store32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void
usbgw_key_compute(const uint8_t secret[USBGW_KEY_LEN], const uint8_t challenge[USBGW_KEY_LEN],
                  uint8_t response[USBGW_KEY_LEN])
{
    uint32_t k[4], s[4];
    for (int i = 0; i < 4; i++) {
        k[i] = usbgw_key_load32(secret + 4 * i);
        s[i] = usbgw_key_load32(challenge + 4 * i) ^ k[i];
    }
    for (int round = 0; round < 10; round++) {
        s[0] += s[1];
        s[3] ^= s[0];
        s[3] = usbgw_key_rotl(s[3], 16);
        s[2] += s[3];
        s[1] ^= s[2];
        s[1] = usbgw_key_rotl(s[1], 12);
        s[0] += s[1];
        s[3] ^= s[0];
        s[3] = usbgw_key_rotl(s[3], 8);
        s[2] += s[3];
        s[1] ^= s[2];
        s[1] = usbgw_key_rotl(s[1], 7);
        s[round & 3] ^= k[(round + 1) & 3];
    }
    for (int i = 0; i < 4; i++)
        usbgw_key_store32(response + 4 * i, s[i] + k[i]);
}
