// Placeholder: filled in by the pool work (functional API declarations).
#pragma once
#include "autograd/tape.h"
#include "autograd/tensor.h"
