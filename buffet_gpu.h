/* buffet_gpu.h - buffet 0.1.0 - GPU memory by intent and lifetime

   STATUS: planned; this header declares nothing yet, see README.

   WHAT IT WILL DO
   GPU memory asked for by intent (device-local, upload, readback, shared) and
   lifetime (frame, persistent):
   - suballocation in large blocks, staging transfers, budgets, statistics;
   - backends: CUDA (driver API), Vulkan (an existing device or its own), and a
     host backend that runs everywhere. libcuda and libvulkan are loaded at run
     time when present, so no SDK is needed to compile and no link flags to run.

   USAGE
   It includes buffet.h itself; buffet headers may be included in any order. In
   exactly one translation unit, #define BUFFET_IMPLEMENTATION and include every
   buffet header you use there.

   CONFIGURATION   to come.
   THREAD SAFETY   to come.
   LIFECYCLE       to come: its table of objects (made by, ended by, owner) comes with them.
   VERSION         buffet 0.1.0; needs buffet.h from the same release.
*/
#ifndef BUFFET_GPU_H_INCLUDED
#define BUFFET_GPU_H_INCLUDED

#ifdef BUFFET_H_PATH
#include BUFFET_H_PATH
#else
#include "buffet.h"
#endif

/* One version for the whole family: this catches a copy taken from another release. */
#if !defined(BUFFET_VERSION_NUMBER) || BUFFET_VERSION_NUMBER != 100
#error "buffet_gpu.h is from buffet 0.1.0 but buffet.h is not: take every buffet header from one release"
#endif

#endif /* BUFFET_GPU_H_INCLUDED */

/* >>implementation */
#if defined(BUFFET_IMPLEMENTATION) && !defined(BUFFET_GPU_IMPL_INCLUDED)
#define BUFFET_GPU_IMPL_INCLUDED
#endif /* BUFFET_IMPLEMENTATION */

/* buffet_gpu.h - Copyright (c) 2026 the buffet authors - MIT licence, see LICENSE. */
