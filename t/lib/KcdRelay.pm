package KcdRelay;

# A TCP relay on loopback in front of the KDC, to make it slow on demand.
#
#   my $relay = KcdRelay->start(dir => $dir, to_port => $realm->kdc_port);
#   $realm->set_kdc_address('127.0.0.1', $relay->port);
#   $relay->set_delay(2);          # each new connection waits 2 s
#   $relay->connections;           # connections accepted so far
#   $relay->stop;                  # also at END
#
# The delay is read from a file at each connection, so a test can change it
# while the relay runs (it is a separate process).

use strict;
use warnings;

use Carp;
use IO::Select;
use IO::Socket::IP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

our %LIVE;

sub start {
    my ($class, %a) = @_;

    my $dir = $a{dir} or croak "dir required";
    my $to = $a{to_port} or croak "to_port required";
    my $to_host = $a{to_host} || '127.0.0.1';

    my $l = IO::Socket::IP->new(LocalHost => '127.0.0.1',
        LocalPort => $a{port} || 0, Proto => 'tcp', Listen => 64,
        ReuseAddr => 1) or croak "relay listen: $!";

    my $self = bless {
        dir   => $dir,
        port  => $l->sockport,
    }, $class;

    $self->{delay_file} = "$dir/relay-$self->{port}.delay";
    $self->{count_file} = "$dir/relay-$self->{port}.count";
    $self->set_delay($a{delay} || 0);
    open my $c, '>', $self->{count_file} or croak "$self->{count_file}: $!";
    close $c;

    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        # own process group: stop() ends the relay and its handlers at once
        POSIX::setsid();
        $SIG{CHLD} = 'IGNORE';
        $SIG{TERM} = sub { POSIX::_exit(0) };
        %LIVE = ();
        _serve($self, $l, $to_host, $to);
        POSIX::_exit(0);
    }
    close $l;

    $self->{pid} = $pid;
    $LIVE{"$self"} = $self;

    return $self;
}

sub port { $_[0]{port} }

sub set_delay {
    my ($self, $d) = @_;
    open my $fh, '>', "$self->{delay_file}.tmp" or croak "$!";
    print $fh "$d\n";
    close $fh;
    rename "$self->{delay_file}.tmp", $self->{delay_file} or croak "$!";
}

sub connections {
    my ($self) = @_;
    return -s $self->{count_file} || 0;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;

    kill 'TERM', -$pid;
    kill 'TERM', $pid;
    for (1 .. 200) {
        last if waitpid($pid, WNOHANG) != 0;
        sleep 0.01;
    }
    kill 'KILL', -$pid;
    waitpid($pid, 0);
    delete $LIVE{"$self"};
}

END {
    $_->stop for values %LIVE;
}

sub _serve {
    my ($self, $l, $host, $port) = @_;

    while (1) {
        my $c = $l->accept or next;

        if (open my $fh, '>>', $self->{count_file}) {
            syswrite $fh, '.';
            close $fh;
        }

        my $pid = fork;
        if (!defined $pid) {
            close $c;
            next;
        }

        if ($pid == 0) {
            $SIG{TERM} = 'DEFAULT';
            close $l;
            _handle($self, $c, $host, $port);
            POSIX::_exit(0);
        }

        close $c;
    }
}

sub _handle {
    my ($self, $c, $host, $port) = @_;

    my $delay = 0;
    if (open my $fh, '<', $self->{delay_file}) {
        $delay = <$fh> // 0;
        chomp $delay;
    }
    sleep $delay if $delay > 0;

    my $u = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port,
        Proto => 'tcp') or return;

    my $sel = IO::Select->new($c, $u);
    # bounded: a relay handler never outlives a minute
    my $deadline = time + 60;

    while (time < $deadline) {
        my @r = $sel->can_read(1) or next;
        for my $s (@r) {
            my $n = sysread($s, my $buf, 65536);
            return unless $n;
            my $peer = $s == $c ? $u : $c;
            my $off = 0;
            while ($off < $n) {
                my $w = syswrite($peer, $buf, $n - $off, $off);
                return unless defined $w;
                $off += $w;
            }
        }
    }
}

1;
