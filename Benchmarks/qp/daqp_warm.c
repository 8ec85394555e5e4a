/*
 * daqp_warm — DAQP through its reusable workspace, warm-started, timed per solve: the like-for-like
 * peer of `qpbench solve` (Benchmarks/qp/run.py builds it against the C sources of the pinned daqp sdist).
 *
 * As in an MPC (and in qpbench), the workspace is set up once per H and A (Cholesky of H, M = A·R⁻¹);
 * each later problem only changes f and the bounds: daqp_update_ldp(v, d) then daqp_solve, which starts
 * from the previous working set and its LDLᵀ factors. Both calls are timed, separately, with
 * CLOCK_MONOTONIC, since DAQP moves part of a solve's work into the update (v = R⁻ᵀf, d = b − M·v, and
 * the check of the unconstrained minimum), which our solve() does inside solve().
 *
 * Input (binary, native endianness, written by run.py):
 *   int32 count; then per problem:
 *   int32 n, int32 mA, int32 flags (1: new H and A follow, set up again; 2: sense changed)
 *   [flags & 1] double H[n·n], A[mA·n] (row-major)
 *   double f[n], bupper[n + mA], blower[n + mA]; int32 sense[n + mA]
 *   (the first n bounds are the simple bounds of x, as DAQP takes them)
 * Output (text, one line per problem):
 *   exitflag iterations update_ns solve_ns x[0] … x[n−1]
 * Usage: daqp_warm INPUT OUTPUT [primal_tol]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "utils.h" /* daqp_update_ldp */

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void read_or_die(void *dst, size_t size, size_t count, FILE *in) {
    if (fread(dst, size, count, in) != count) {
        fprintf(stderr, "daqp_warm: truncated input\n");
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: daqp_warm INPUT OUTPUT [primal_tol]\n");
        return 2;
    }
    double primal_tol = argc > 3 ? atof(argv[3]) : -1;
    FILE *in = fopen(argv[1], "rb");
    FILE *out = fopen(argv[2], "w");
    if (!in || !out) {
        perror("daqp_warm");
        return 2;
    }
    int count;
    read_or_die(&count, sizeof count, 1, in);

    DAQPWorkspace work;
    memset(&work, 0, sizeof work);
    DAQPProblem qp;
    memset(&qp, 0, sizeof qp);
    int have_workspace = 0, n = 0, ma = 0;
    double *h = NULL, *a = NULL, *f = NULL, *bu = NULL, *bl = NULL, *x = NULL, *lam = NULL;
    int *sense = NULL;

    for (int k = 0; k < count; k++) {
        int header[3];
        read_or_die(header, sizeof(int), 3, in);
        int flags = header[2];
        if (flags & 1) {
            if (have_workspace) {
                free_daqp_workspace(&work);
                free_daqp_ldp(&work);
                memset(&work, 0, sizeof work);
            }
            n = header[0];
            ma = header[1];
            int m = n + ma;
            h = realloc(h, sizeof(double) * n * n);
            a = realloc(a, sizeof(double) * (ma > 0 ? ma * n : 1));
            f = realloc(f, sizeof(double) * n);
            bu = realloc(bu, sizeof(double) * m);
            bl = realloc(bl, sizeof(double) * m);
            sense = realloc(sense, sizeof(int) * m);
            x = realloc(x, sizeof(double) * n);
            lam = realloc(lam, sizeof(double) * m);
            read_or_die(h, sizeof(double), (size_t)n * n, in);
            read_or_die(a, sizeof(double), (size_t)ma * n, in);
        }
        int m = n + ma;
        read_or_die(f, sizeof(double), n, in);
        read_or_die(bu, sizeof(double), m, in);
        read_or_die(bl, sizeof(double), m, in);
        read_or_die(sense, sizeof(int), m, in);

        long long update_ns = 0;
        if (flags & 1) {
            // Setup: not timed (the factorization of the fixed H and A, done once, like qpbench's init).
            qp = (DAQPProblem){n, m, n, h, f, a, bu, bl, sense, NULL, 0, 0};
            allocate_daqp_settings(&work);
            if (primal_tol > 0) work.settings->primal_tol = primal_tol;
            c_float setup_time = 0;
            int flag = setup_daqp(&qp, &work, &setup_time);
            if (flag < 0) {
                fprintf(stderr, "daqp_warm: setup failed (%d) at problem %d\n", flag, k + 1);
                return 1;
            }
            have_workspace = 1;
        } else {
            // f and the bounds were read into the buffers qp points at; the working set in work.sense is kept
            // unless the constraint types (equalities) changed.
            int mask = DAQP_UPDATE_v | DAQP_UPDATE_d | ((flags & 2) ? DAQP_UPDATE_sense : 0);
            long long t0 = now_ns();
            int flag = daqp_update_ldp(mask, &work, &qp);
            update_ns = now_ns() - t0;
            if (flag < 0) {
                fprintf(out, "%d 0 %lld 0", flag, update_ns);
                for (int i = 0; i < n; i++) fprintf(out, " nan");
                fprintf(out, "\n");
                continue;
            }
        }
        DAQPResult res;
        memset(&res, 0, sizeof res);
        res.x = x;
        res.lam = lam;
        long long t0 = now_ns();
        daqp_solve(&res, &work);
        long long solve_ns = now_ns() - t0;
        fprintf(out, "%d %d %lld %lld", res.exitflag, res.iter, update_ns, solve_ns);
        for (int i = 0; i < n; i++) fprintf(out, " %.17g", x[i]);
        fprintf(out, "\n");
    }
    fclose(out);
    fclose(in);
    return 0;
}
