/* buffet_net.h - buffet 0.1.0 - buffers meeting sockets

   STATUS: planned; this header declares nothing yet, see README.

   WHAT IT WILL DO
   Moving buffet chains and packets through sockets:
   - chain send and receive with scatter-gather I/O and correct partial writes;
   - batched UDP (recvmmsg/sendmmsg, GSO/GRO), MSG_ZEROCOPY with completion tracking;
   - io_uring provided-buffer rings;
   - passing shared-memory buffers between processes over UNIX sockets;
   - QUIC streams over ngtcp2 (opt-in; links ngtcp2 and GnuTLS when enabled).
   Builds on buffet.h, and on buffet_packet.h for packet pools.

   USAGE
   It includes buffet.h itself; buffet headers may be included in any order. In
   exactly one translation unit, #define BUFFET_IMPLEMENTATION and include every
   buffet header you use there.

   CONFIGURATION   to come.
   THREAD SAFETY   to come.
   LIFECYCLE       to come: its table of objects (made by, ended by, owner) comes with them.
   VERSION         buffet 0.1.0; needs buffet.h from the same release.
*/
#ifndef BUFFET_NET_H_INCLUDED
#define BUFFET_NET_H_INCLUDED

#ifdef BUFFET_H_PATH
#include BUFFET_H_PATH
#else
#include "buffet.h"
#endif

/* One version for the whole family: this catches a copy taken from another release. */
#if !defined(BUFFET_VERSION_NUMBER) || BUFFET_VERSION_NUMBER != 100
#error "buffet_net.h is from buffet 0.1.0 but buffet.h is not: take every buffet header from one release"
#endif

#endif /* BUFFET_NET_H_INCLUDED */

/* >>implementation */
#if defined(BUFFET_IMPLEMENTATION) && !defined(BUFFET_NET_IMPL_INCLUDED)
#define BUFFET_NET_IMPL_INCLUDED
#endif /* BUFFET_IMPLEMENTATION */

/* buffet_net.h - Copyright (c) 2026 the buffet authors - MIT licence, see LICENSE. */
