/* gst-canary — builds without the CUDA toolkit have no CUDA backend (backend.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "backend.h"

const canary_backend *
canary_backend_cuda (void)
{
  return NULL;
}
