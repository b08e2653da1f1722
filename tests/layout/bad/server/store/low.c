/* The store, including a layer above it: refused. */
#include "server/ops/up.h"
