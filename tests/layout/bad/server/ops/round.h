#include "server/ops/up.h"
