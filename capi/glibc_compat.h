/* Force-included into every C file of the build, Go's runtime/cgo included
 * (scripts/build-lib.sh passes -include through CGO_CFLAGS).
 *
 * glibc 2.34 merged libpthread and libdl into libc and gave their functions new
 * symbol versions (GLIBC_2.34; pthread_sigmask and pthread_getattr_np GLIBC_2.32).
 * Linked on a current system, the library would then need glibc >= 2.34. The
 * original versions are still exported (as compatibility symbols) by every glibc,
 * so binding to them keeps the floor at the oldest glibc these functions had:
 * 2.17 for manylinux2014 (docs/design.md, "The wheel"). The library also lists
 * libpthread.so.0 and libdl.so.2 as needed (build-lib.sh), which is where an old
 * glibc defines them. */
#ifndef EXITNET_GLIBC_COMPAT_H
#define EXITNET_GLIBC_COMPAT_H
/* No header here: a force-included header must not fix the feature macros of the
 * file it is put in front of. __gnu_linux__ is predefined for glibc targets. */
#if defined(__gnu_linux__) && !defined(__ASSEMBLER__)
#  if defined(__x86_64__)
#    define XNET_GLIBC_BASE "GLIBC_2.2.5"
#  elif defined(__aarch64__)
#    define XNET_GLIBC_BASE "GLIBC_2.17"
#  endif
#  ifdef XNET_GLIBC_BASE
#    define XNET_OLD(sym) __asm__(".symver " #sym "," #sym "@" XNET_GLIBC_BASE);
XNET_OLD(pthread_create)
XNET_OLD(pthread_once)
XNET_OLD(pthread_key_create)
XNET_OLD(pthread_getspecific)
XNET_OLD(pthread_setspecific)
XNET_OLD(pthread_attr_getstack)
XNET_OLD(pthread_attr_getstacksize)
XNET_OLD(pthread_getattr_np)
XNET_OLD(pthread_sigmask)
XNET_OLD(dlopen)
XNET_OLD(dlsym)
XNET_OLD(dlclose)
XNET_OLD(dlerror)
#    undef XNET_OLD
#  endif
#endif
#endif
