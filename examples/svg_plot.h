// The examples' SVG writer moved to examples/demo/svg.h; this name keeps working.
#pragma once
#include "demo/svg.h"
