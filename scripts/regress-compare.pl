#!/usr/bin/env perl
# Compares the results directories of two runs of PostgreSQL's regression suite (see
# scripts/regress.sh): the run without the guard (BASE) and a run with it (OTHER).
#
#   regress-compare.pl identical BASE OTHER
#       every file of OTHER is byte for byte the file of BASE, and both have the same files
#   regress-compare.pl warnings BASE OTHER RULE-ID...
#       the same, except that OTHER may have guard WARNING blocks added: lines that diff
#       reports as added (never changed or deleted), each run of them made of blocks that
#       start with "WARNING:  <rule-id>: " or "WARNING:  pg_migration_guard " and go on with
#       the DETAIL/HINT/CONTEXT lines of that message (and their continuation lines)
#
# Prints every difference it does not accept (as diff output), and a summary. Exit status 0
# when everything is accepted, 1 otherwise. Uses diff(1) and core Perl only.
use strict;
use warnings;

my ($mode, $base, $other, @rules) = @ARGV;
die "usage: $0 identical|warnings BASE OTHER [RULE-ID...]\n"
  unless defined $other && ($mode eq 'identical' || ($mode eq 'warnings' && @rules));

# A guard WARNING: a rule's finding ("<rule-id>: ...") or one of the guard's own
# ("pg_migration_guard could not ...").
my $rule_re = join '|', map { quotemeta } @rules;
my $warning_re = qr/^WARNING:  (?:($rule_re): |(pg_migration_guard) )/;
# The start of any other message psql prints; never part of a guard WARNING block.
my $other_message_re = qr/^(?:ERROR|WARNING|NOTICE|INFO|LOG|DEBUG\d?|FATAL|PANIC|STATEMENT|LINE \d+):/;

sub files_of {
  my ($dir) = @_;
  opendir my $dh, $dir or die "$dir: $!\n";
  my @f = sort grep { -f "$dir/$_" } readdir $dh;
  closedir $dh;
  return @f;
}

sub lines_of {
  my ($path) = @_;
  open my $fh, '<', $path or die "$path: $!\n";
  my @l = <$fh>;
  chomp @l;
  return \@l;
}

# Whether the lines are one or more whole guard WARNING blocks; counts them into %$kinds.
sub guard_blocks {
  my ($lines, $kinds) = @_;
  my $state = '';    # '' before the first WARNING line, then the part we are in
  my %seen;
  for my $l (@$lines) {
    if ($l =~ $warning_re) {
      $seen{ defined $1 ? $1 : "$2 (the guard's own WARNING)" }++;
      $state = 'primary';
    } elsif ($state eq '' || $l =~ $other_message_re) {
      return 0;
    } elsif ($l =~ /^(DETAIL|HINT|CONTEXT):  /) {
      $state = $1;
    } elsif ($state eq 'primary') {
      return 0;      # the primary message is one line; DETAIL, HINT, CONTEXT may have more
    }
  }
  return 0 if $state eq '';
  $kinds->{$_} += $seen{$_} for keys %seen;
  return 1;
}

my %base_files = map { $_ => 1 } files_of($base);
my %other_files = map { $_ => 1 } files_of($other);
my ($compared, $blocks, %kinds) = (0, 0);
my @unaccepted;

for my $f (sort keys %base_files) {
  unless ($other_files{$f}) { push @unaccepted, "only in $base: $f\n"; next }
}
for my $f (sort keys %other_files) {
  unless ($base_files{$f}) { push @unaccepted, "only in $other: $f\n"; next }
  $compared++;
  my ($a_path, $o_path) = ("$base/$f", "$other/$f");
  open my $dh, '-|', 'diff', $a_path, $o_path or die "diff: $!\n";
  my @diff = <$dh>;
  close $dh;
  next unless @diff;    # identical
  if ($mode eq 'identical') {
    push @unaccepted, "diff $a_path $o_path\n", @diff;
    next;
  }
  # warnings: every hunk must be an addition of guard WARNING blocks.
  my $o = lines_of($o_path);
  my @rejected;
  my $i = 0;
  while ($i < @diff) {
    my $head = $diff[$i];
    my $end = $i + 1;
    $end++ while $end < @diff && $diff[$end] !~ /^\d/;
    my @hunk = @diff[$i .. $end - 1];
    $i = $end;
    my ($from, $to);
    if ($head =~ /^\d+a(\d+)(?:,(\d+))?$/) {
      ($from, $to) = ($1, defined $2 ? $2 : $1);
    } else {
      push @rejected, @hunk;    # a change or a deletion
      next;
    }
    # diff may place an added run one or more lines off where it was printed when its
    # last line equals the line before it (or its first the line after it): try each
    # equivalent placement.
    my %k;
    my $ok = guard_blocks([@$o[$from - 1 .. $to - 1]], \%k);
    for my $dir (-1, 1) {
      my ($s, $e) = ($from, $to);
      while (!$ok) {
        if ($dir < 0) {
          last unless $s > 1 && $o->[$s - 2] eq $o->[$e - 1];
        } else {
          last unless $e < @$o && $o->[$s - 1] eq $o->[$e];
        }
        ($s, $e) = ($s + $dir, $e + $dir);
        $ok = guard_blocks([@$o[$s - 1 .. $e - 1]], \%k);
      }
    }
    if ($ok) {
      $kinds{$_} += $k{$_} for keys %k;
    } else {
      push @rejected, @hunk;
    }
  }
  push @unaccepted, "diff $a_path $o_path\n", @rejected if @rejected;
}

$blocks += $_ for values %kinds;
if (@unaccepted) {
  print "differences that are not ", ($mode eq 'identical' ? 'allowed' : 'added guard WARNING blocks'), ":\n";
  print @unaccepted;
}
printf "%d files compared, %d differences not accepted", $compared, scalar grep { /^diff / || /^only in / } @unaccepted;
if ($mode eq 'warnings') {
  printf ", %d guard WARNING blocks added\n", $blocks;
  printf "  %6d %s\n", $kinds{$_}, $_ for sort { $kinds{$b} <=> $kinds{$a} || $a cmp $b } keys %kinds;
  if ($blocks == 0) {
    print "no guard WARNING at all: the guard did not judge the suite's statements\n";
    exit 1;
  }
} else {
  print "\n";
}
exit(@unaccepted ? 1 : 0);
