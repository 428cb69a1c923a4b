/* Peak multiply-adds per second of one core, per x86 instruction form:
 * FP32 FMA, i16 pairs (vpmaddwd), u8 x i8 pairs (vpmaddubsw). Independent
 * chains of unrolled instructions, so the rate is the issue rate.
 * Build and run (docs/benchmarks.md, "Ninth pass"):
 *   gcc -O2 scripts/vector_peaks.c -o target/vector_peaks && ./target/vector_peaks
 */
#include <stdio.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define N 100000000L
#define R8(x) x x x x x x x x
int main(){
  double t=now();
  for(long i=0;i<N;i++){ __asm__ volatile(
    "vfmadd231ps %%ymm14,%%ymm15,%%ymm0\n vfmadd231ps %%ymm14,%%ymm15,%%ymm1\n vfmadd231ps %%ymm14,%%ymm15,%%ymm2\n vfmadd231ps %%ymm14,%%ymm15,%%ymm3\n"
    "vfmadd231ps %%ymm14,%%ymm15,%%ymm4\n vfmadd231ps %%ymm14,%%ymm15,%%ymm5\n vfmadd231ps %%ymm14,%%ymm15,%%ymm6\n vfmadd231ps %%ymm14,%%ymm15,%%ymm7\n"
    "vfmadd231ps %%ymm14,%%ymm15,%%ymm8\n vfmadd231ps %%ymm14,%%ymm15,%%ymm9\n vfmadd231ps %%ymm14,%%ymm15,%%ymm10\n vfmadd231ps %%ymm14,%%ymm15,%%ymm11\n"
    ::: "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11");}
  double t1=now()-t; printf("vfmadd231ps: %.2f GMAC/s\n", N*12*8/t1/1e9);
  t=now();
  for(long i=0;i<N;i++){ __asm__ volatile(
    "vpmaddwd %%ymm14,%%ymm15,%%ymm12\n vpaddd %%ymm12,%%ymm0,%%ymm0\n vpmaddwd %%ymm14,%%ymm15,%%ymm13\n vpaddd %%ymm13,%%ymm1,%%ymm1\n"
    "vpmaddwd %%ymm14,%%ymm15,%%ymm12\n vpaddd %%ymm12,%%ymm2,%%ymm2\n vpmaddwd %%ymm14,%%ymm15,%%ymm13\n vpaddd %%ymm13,%%ymm3,%%ymm3\n"
    "vpmaddwd %%ymm14,%%ymm15,%%ymm12\n vpaddd %%ymm12,%%ymm4,%%ymm4\n vpmaddwd %%ymm14,%%ymm15,%%ymm13\n vpaddd %%ymm13,%%ymm5,%%ymm5\n"
    ::: "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm12","xmm13");}
  t1=now()-t; printf("vpmaddwd + vpaddd: %.2f GMAC/s\n", N*6*16/t1/1e9);
  t=now();
  for(long i=0;i<N;i++){ __asm__ volatile(
    "vpmaddubsw %%ymm14,%%ymm15,%%ymm12\n vpmaddwd %%ymm12,%%ymm11,%%ymm12\n vpaddd %%ymm12,%%ymm0,%%ymm0\n"
    "vpmaddubsw %%ymm14,%%ymm15,%%ymm13\n vpmaddwd %%ymm13,%%ymm11,%%ymm13\n vpaddd %%ymm13,%%ymm1,%%ymm1\n"
    "vpmaddubsw %%ymm14,%%ymm15,%%ymm10\n vpmaddwd %%ymm10,%%ymm11,%%ymm10\n vpaddd %%ymm10,%%ymm2,%%ymm2\n"
    "vpmaddubsw %%ymm14,%%ymm15,%%ymm9\n vpmaddwd %%ymm9,%%ymm11,%%ymm9\n vpaddd %%ymm9,%%ymm3,%%ymm3\n"
    ::: "xmm0","xmm1","xmm2","xmm3","xmm9","xmm10","xmm12","xmm13");}
  t1=now()-t; printf("vpmaddubsw + vpmaddwd + vpaddd: %.2f GMAC/s\n", N*4*32/t1/1e9);
  t=now();
  for(long i=0;i<N;i++){ __asm__ volatile(
    "vpmaddubsw %%ymm14,%%ymm15,%%ymm12\n vpaddsw %%ymm12,%%ymm0,%%ymm0\n"
    "vpmaddubsw %%ymm14,%%ymm15,%%ymm13\n vpaddsw %%ymm13,%%ymm1,%%ymm1\n"
    "vpmaddubsw %%ymm14,%%ymm15,%%ymm10\n vpaddsw %%ymm10,%%ymm2,%%ymm2\n"
    "vpmaddubsw %%ymm14,%%ymm15,%%ymm9\n vpaddsw %%ymm9,%%ymm3,%%ymm3\n"
    ::: "xmm0","xmm1","xmm2","xmm3","xmm9","xmm10","xmm12","xmm13");}
  t1=now()-t; printf("vpmaddubsw + vpaddsw (i16 sums, saturating): %.2f GMAC/s\n", N*4*32/t1/1e9);
}
