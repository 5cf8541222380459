/* buffet_frame.h - buffet 0.1.0 - frame arenas, scopes and object pools

   STATUS: planned; this header declares nothing yet, see README.

   WHAT IT WILL DO
   Memory whose lifetime is a frame or a scope, and objects of one size:
   - frame arenas: bump allocation reset once per frame, with N frames in flight;
   - scopes with deferred cleanup, run in reverse order when the scope ends;
   - fixed-size object pools with per-thread caches;
   - tags and budgets, transfers of objects between threads, frame barriers.
   Every one of them is a buffet_allocator (see buffet.h), so it can back any other
   buffet type and be wrapped in the debug allocator.

   USAGE
   It includes buffet.h itself; buffet headers may be included in any order. In
   exactly one translation unit, #define BUFFET_IMPLEMENTATION and include every
   buffet header you use there.

   CONFIGURATION   to come.
   THREAD SAFETY   to come.
   VERSION         buffet 0.1.0; needs buffet.h from the same release.
*/
#ifndef BUFFET_FRAME_H_INCLUDED
#define BUFFET_FRAME_H_INCLUDED

#ifdef BUFFET_H_PATH
#include BUFFET_H_PATH
#else
#include "buffet.h"
#endif

/* One version for the whole family: this catches a copy taken from another release. */
#if !defined(BUFFET_VERSION_NUMBER) || BUFFET_VERSION_NUMBER != 100
#error "buffet_frame.h is from buffet 0.1.0 but buffet.h is not: take every buffet header from one release"
#endif

#endif /* BUFFET_FRAME_H_INCLUDED */

/* >>implementation */
#if defined(BUFFET_IMPLEMENTATION) && !defined(BUFFET_FRAME_IMPL_INCLUDED)
#define BUFFET_FRAME_IMPL_INCLUDED
#endif /* BUFFET_IMPLEMENTATION */

/* buffet_frame.h - Copyright (c) 2026 the buffet authors - MIT licence, see LICENSE. */
