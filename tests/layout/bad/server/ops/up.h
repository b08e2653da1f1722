/* Two modules of one layer that include each other: a cycle. */
#include "server/ops/round.h"
