/*
 * The C baseline for `netsort bench --c`: a careful single-threaded sort of
 * 100-byte records (10-byte key, memcmp order), the yardstick the issue sets.
 *
 *   sort-c [--no-fsync] OUTPUT INPUT...
 *
 * All inputs are sorted together into one output, as one process holding the
 * whole job would. The plan, and why:
 *   1. map every input (read-only, prefaulted: the data is in the page cache);
 *   2. count records per bucket of the first two key bytes (65536 buckets);
 *   3. scatter whole records into one buffer, bucket after bucket: each bucket
 *      (~160 records = 16 KB for 10.7 M uniform records) then fits in L1/L2;
 *   4. per bucket, sort (key bytes 2..9 as a u64, index) pairs, then copy the
 *      records in that order into a staging buffer, written with large writes;
 *      the scatter buffer behind the last sorted bucket goes back to the kernel;
 *   5. fsync (netsort makes its output durable too; --no-fsync skips it).
 * It prints one JSON line of phase timings (ms) on stdout; exit 0 on success.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RECORD_BYTES 100
#define KEY_BYTES 10
#define BUCKET_COUNT 65536
#define MAX_INPUTS 1024
/* Output is written in pieces of this many bytes: large writes, bounded staging. */
#define WRITE_CHUNK_BYTES (8u * 1024 * 1024)
/* Sorted-and-copied parts of the scatter buffer go back to the kernel in pieces of
 * this many bytes (a multiple of the 2 MiB huge page): the output's page cache then
 * reuses that memory instead of needing fresh pages, and peak RSS falls. */
#define RELEASE_BYTES (64u * 1024 * 1024)
/* Below this many pairs, insertion sort beats partitioning. */
#define INSERTION_MAX 16

typedef struct {
  uint64_t key; /* key bytes 2..9, big-endian, so integer order is memcmp order */
  uint32_t index; /* record index inside the bucket */
  uint32_t pad;
} pair_t;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what, const char *name) {
  fprintf(stderr, "sort-c: %s %s: %s\n", what, name, strerror(errno));
  exit(1);
}

static inline uint64_t key_tail(const uint8_t *r) {
  uint64_t k;
  memcpy(&k, r + 2, 8);
  return __builtin_bswap64(k);
}

static void insertion_sort(pair_t *a, size_t n) {
  for (size_t i = 1; i < n; i++) {
    pair_t x = a[i];
    size_t j = i;
    while (j > 0 && a[j - 1].key > x.key) {
      a[j] = a[j - 1];
      j--;
    }
    a[j] = x;
  }
}

/* Three-way quicksort: many equal keys (the dups kind) cost nothing extra. */
static void sort_pairs(pair_t *a, size_t n) {
  while (n > INSERTION_MAX) {
    uint64_t x = a[0].key, y = a[n / 2].key, z = a[n - 1].key;
    uint64_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
    size_t lt = 0, i = 0, gt = n;
    while (i < gt) {
      if (a[i].key < pivot) {
        pair_t t = a[lt]; a[lt] = a[i]; a[i] = t;
        lt++; i++;
      } else if (a[i].key > pivot) {
        gt--;
        pair_t t = a[gt]; a[gt] = a[i]; a[i] = t;
      } else {
        i++;
      }
    }
    /* Recurse into the smaller side, loop on the larger: stack depth O(log n). */
    if (lt < n - gt) {
      sort_pairs(a, lt);
      a += gt; n -= gt;
    } else {
      sort_pairs(a + gt, n - gt);
      n = lt;
    }
  }
  insertion_sort(a, n);
}

static void write_all(int fd, const uint8_t *buf, size_t len, const char *name) {
  while (len > 0) {
    ssize_t w = write(fd, buf, len);
    if (w < 0) {
      if (errno == EINTR) continue;
      die("cannot write", name);
    }
    buf += w;
    len -= (size_t)w;
  }
}

static void *map_anonymous(size_t bytes) {
  void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("cannot allocate", "memory");
  madvise(p, bytes, MADV_HUGEPAGE); /* fewer page faults on first touch */
  return p;
}

int main(int argc, char **argv) {
  int do_fsync = 1;
  int arg = 1;
  if (arg < argc && strcmp(argv[arg], "--no-fsync") == 0) {
    do_fsync = 0;
    arg++;
  }
  if (argc - arg < 2 || argc - arg - 1 > MAX_INPUTS) {
    fprintf(stderr, "usage: sort-c [--no-fsync] OUTPUT INPUT... (at most %d inputs)\n", MAX_INPUTS);
    return 2;
  }
  const char *output = argv[arg++];
  int inputs = argc - arg;
  const uint8_t *maps[MAX_INPUTS];
  size_t sizes[MAX_INPUTS];
  double t0 = now_ms();

  size_t total = 0;
  for (int f = 0; f < inputs; f++) {
    const char *name = argv[arg + f];
    int fd = open(name, O_RDONLY);
    if (fd < 0) die("cannot open", name);
    struct stat st;
    if (fstat(fd, &st) != 0) die("cannot stat", name);
    if (st.st_size % RECORD_BYTES != 0) {
      fprintf(stderr, "sort-c: %s is %lld bytes, not a multiple of %d\n", name, (long long)st.st_size, RECORD_BYTES);
      return 2;
    }
    sizes[f] = (size_t)st.st_size;
    maps[f] = NULL;
    if (sizes[f] > 0) {
      void *p = mmap(NULL, sizes[f], PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
      if (p == MAP_FAILED) die("cannot map", name);
      madvise(p, sizes[f], MADV_SEQUENTIAL);
      maps[f] = p;
    }
    close(fd);
    total += sizes[f];
  }
  size_t records = total / RECORD_BYTES;
  double t_map = now_ms();

  /* Pass 1: bucket sizes, then their starts (in records). */
  static size_t count[BUCKET_COUNT];
  static size_t start[BUCKET_COUNT + 1];
  for (int f = 0; f < inputs; f++) {
    const uint8_t *p = maps[f];
    for (size_t o = 0; o < sizes[f]; o += RECORD_BYTES) count[(p[o] << 8) | p[o + 1]]++;
  }
  size_t largest = 0;
  start[0] = 0;
  for (int b = 0; b < BUCKET_COUNT; b++) {
    start[b + 1] = start[b] + count[b];
    if (count[b] > largest) largest = count[b];
  }
  double t_count = now_ms();

  /* Pass 2: scatter whole records into their buckets. */
  uint8_t *scattered = map_anonymous(total);
  static size_t next[BUCKET_COUNT];
  memcpy(next, start, sizeof next);
  for (int f = 0; f < inputs; f++) {
    const uint8_t *p = maps[f];
    for (size_t o = 0; o < sizes[f]; o += RECORD_BYTES) {
      unsigned b = (p[o] << 8) | p[o + 1];
      memcpy(scattered + next[b]++ * RECORD_BYTES, p + o, RECORD_BYTES);
    }
  }
  for (int f = 0; f < inputs; f++) if (maps[f]) munmap((void *)maps[f], sizes[f]);
  double t_scatter = now_ms();

  /* Pass 3: sort each bucket, gather it into the staging buffer, write. */
  int out = open(output, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out < 0) die("cannot create", output);
  pair_t *pairs = malloc((largest ? largest : 1) * sizeof(pair_t));
  uint8_t *staging = malloc(WRITE_CHUNK_BYTES);
  if (!pairs || !staging) die("cannot allocate", "memory");
  size_t staged = 0;
  size_t released = 0; /* bytes at the start of `scattered` already given back */
  double sort_ms = 0, write_ms = 0;
  for (int b = 0; b < BUCKET_COUNT; b++) {
    size_t n = count[b];
    if (n == 0) continue;
    double a = now_ms();
    const uint8_t *base = scattered + start[b] * RECORD_BYTES;
    for (size_t i = 0; i < n; i++) {
      pairs[i].key = key_tail(base + i * RECORD_BYTES);
      pairs[i].index = (uint32_t)i;
    }
    sort_pairs(pairs, n);
    double c = now_ms();
    sort_ms += c - a;
    double written_ms = 0;
    for (size_t i = 0; i < n; i++) {
      if (staged + RECORD_BYTES > WRITE_CHUNK_BYTES) {
        double w = now_ms();
        write_all(out, staging, staged, output);
        written_ms += now_ms() - w;
        staged = 0;
      }
      memcpy(staging + staged, base + (size_t)pairs[i].index * RECORD_BYTES, RECORD_BYTES);
      staged += RECORD_BYTES;
    }
    /* The gather copies belong to the sort; the writes inside the loop do not. */
    sort_ms += now_ms() - c - written_ms;
    write_ms += written_ms;
    /* Bucket b now lives in the staging buffer or the file: release what lies before it. */
    size_t done = start[b + 1] * RECORD_BYTES;
    if (done - released >= RELEASE_BYTES) {
      size_t len = (done - released) / RELEASE_BYTES * RELEASE_BYTES;
      madvise(scattered + released, len, MADV_DONTNEED);
      released += len;
    }
  }
  double w = now_ms();
  write_all(out, staging, staged, output);
  write_ms += now_ms() - w;
  double t_sorted = now_ms();
  if (do_fsync && fsync(out) != 0) die("cannot fsync", output);
  if (close(out) != 0) die("cannot close", output);
  double t_end = now_ms();

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("{\"records\":%zu,\"bytes\":%zu,\"mapMs\":%.1f,\"countMs\":%.1f,\"scatterMs\":%.1f,"
         "\"sortMs\":%.1f,\"writeMs\":%.1f,\"fsyncMs\":%.1f,\"totalMs\":%.1f,\"largestBucket\":%zu,"
         "\"peakRssBytes\":%lld}\n",
         records, total, t_map - t0, t_count - t_map, t_scatter - t_count, sort_ms, write_ms,
         t_end - t_sorted, t_end - t0, largest, (long long)ru.ru_maxrss * 1024);
  return 0;
}
