// Swift calls the native core's C API directly (sdk/native/include/edgevideo.h).
#include "edgevideo.h"
