/* buffet_packet.h - buffet 0.1.0 - packet buffer pools

   STATUS: planned; this header declares nothing yet, see README.

   WHAT IT WILL DO
   Pools of network packet buffers:
   - size classes, per-thread caches over a lock-free shared store;
   - headroom and tailroom, per-packet metadata, refcounted zero-copy clones,
     multi-segment chains (packets are buffet_buf buffers, so they go into chains);
   - NUMA placement (libnuma is loaded at run time when present) and huge pages;
   - statistics (Prometheus text), leak and lifecycle tracing.

   USAGE
   It includes buffet.h itself; buffet headers may be included in any order. In
   exactly one translation unit, #define BUFFET_IMPLEMENTATION and include every
   buffet header you use there.

   CONFIGURATION   to come.
   THREAD SAFETY   to come.
   VERSION         buffet 0.1.0; needs buffet.h from the same release.
*/
#ifndef BUFFET_PACKET_H_INCLUDED
#define BUFFET_PACKET_H_INCLUDED

#ifdef BUFFET_H_PATH
#include BUFFET_H_PATH
#else
#include "buffet.h"
#endif

/* One version for the whole family: this catches a copy taken from another release. */
#if !defined(BUFFET_VERSION_NUMBER) || BUFFET_VERSION_NUMBER != 100
#error "buffet_packet.h is from buffet 0.1.0 but buffet.h is not: take every buffet header from one release"
#endif

#endif /* BUFFET_PACKET_H_INCLUDED */

/* >>implementation */
#if defined(BUFFET_IMPLEMENTATION) && !defined(BUFFET_PACKET_IMPL_INCLUDED)
#define BUFFET_PACKET_IMPL_INCLUDED
#endif /* BUFFET_IMPLEMENTATION */

/* buffet_packet.h - Copyright (c) 2026 the buffet authors - MIT licence, see LICENSE. */
