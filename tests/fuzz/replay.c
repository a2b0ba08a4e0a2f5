/* gst-canary fuzz — a main() that runs a fuzz target once on each file named on the command line
 * (directories are walked one level). Used where libFuzzer is unavailable, and to replay crashes:
 *   build/tests/fuzz/replay_fuzz_zip crash-1234 tests/fuzz/corpus/fuzz_zip
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int
run_file (const char *path)
{
  gchar *bytes;
  gsize len;
  GError *err = NULL;
  if (!g_file_get_contents (path, &bytes, &len, &err)) {
    fprintf (stderr, "%s\n", err->message);
    g_error_free (err);
    return 1;
  }
  /* a private copy of exactly `len` bytes, so ASan/valgrind see reads past the end */
  guint8 *copy = g_memdup2 (bytes, len);
  LLVMFuzzerTestOneInput (copy, len);
  g_free (copy);
  g_free (bytes);
  return 0;
}

int
main (int argc, char **argv)
{
  int failures = 0, runs = 0;
  for (int i = 1; i < argc; i++) {
    if (g_file_test (argv[i], G_FILE_TEST_IS_DIR)) {
      GDir *dir = g_dir_open (argv[i], 0, NULL);
      const char *name;
      while (dir && (name = g_dir_read_name (dir))) {
        char *p = g_build_filename (argv[i], name, NULL);
        if (g_file_test (p, G_FILE_TEST_IS_REGULAR)) {
          failures += run_file (p);
          runs++;
        }
        g_free (p);
      }
      if (dir)
        g_dir_close (dir);
    } else {
      failures += run_file (argv[i]);
      runs++;
    }
  }
  printf ("replayed %d inputs\n", runs);
  return failures ? 1 : 0;
}
