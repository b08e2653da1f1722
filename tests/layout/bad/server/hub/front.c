/* A front end that includes the other front end: refused. */
#include "server/provision/decide.h"
