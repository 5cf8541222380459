// compile_all.cc - every buffet header, implementation included, in one C++17 translation
// unit: a user may define BUFFET_IMPLEMENTATION in a .cpp file.
#include <cstdio>

#define BUFFET_IMPLEMENTATION
#include "../buffet.h"
#include "../buffet_frame.h"
#include "../buffet_packet.h"
#include "../buffet_net.h"
#include "../buffet_gpu.h"

static_assert(BUFFET_VERSION_NUMBER == BUFFET_VERSION_MAJOR * 10000 + BUFFET_VERSION_MINOR * 100 + BUFFET_VERSION_PATCH,
              "BUFFET_VERSION_NUMBER is major*10000 + minor*100 + patch");

int main() {
    std::printf("compile_all.cc: buffet %s (%lu)\n", BUFFET_VERSION_STRING, static_cast<unsigned long>(buffet_version()));
    return buffet_version() == BUFFET_VERSION_NUMBER ? 0 : 1;
}
