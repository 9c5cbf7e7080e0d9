#!/bin/sh
# Builds small ELF seeds with DWARF 4 and 5, CFI, inlines and an SDT note.
set -e
cd "$(dirname "$0")"
mkdir -p seeds
t=$(mktemp -d)
cat > "$t/s.c" <<'C'
struct req { int id; char name[8]; struct req *next; unsigned f:3; };
int g = 3;
static inline int sq(int v) { return v * v; }
__attribute__((noinline)) int handle(struct req *r, int n) { int l = n * 2; g += sq(n); return l + r->id; }
int main(int c, char **v) { struct req r = {1, "x", 0, 2};
  __asm__ __volatile__("990: nop\n.pushsection .note.stapsdt,\"?\",\"note\"\n.balign 4\n.4byte 992f-991f,994f-993f,3\n991: .asciz \"stapsdt\"\n992: .balign 4\n993: .8byte 990b\n.8byte 0\n.8byte 0\n.asciz \"app\"\n.asciz \"m\"\n.asciz \"-4@%edi\"\n994: .balign 4\n.popsection\n");
  return handle(&r, c); }
C
for o in -O0 -O2; do
  for d in -gdwarf-4 -gdwarf-5; do
    gcc -c $d $o -o "seeds/s$o$d.o" "$t/s.c"
  done
done
gcc -g -O2 -o seeds/s-exe "$t/s.c"
strip --strip-unneeded -o seeds/s-stripped seeds/s-exe
rm -rf "$t"
