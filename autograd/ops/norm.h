// Placeholder: filled in by the norm work (functional API declarations).
#pragma once
#include "autograd/tape.h"
#include "autograd/tensor.h"
