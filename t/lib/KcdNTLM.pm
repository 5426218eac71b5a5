package KcdNTLM;

# A pure-Perl NTLMv2 client for the ngx_http_kcd_module tests (MS-NLMP).
# It builds valid NEGOTIATE / AUTHENTICATE messages and, through options,
# deliberately broken ones, so the module's refusal paths can be tested.
#
# Crypto: MD5 from Digest::MD5 (core); HMAC-MD5 and MD4 are written here so
# the tests need nothing from OpenSSL's legacy provider.

use strict;
use warnings;

use Carp qw(croak);
use Digest::MD5 qw(md5);
use Digest::SHA qw(sha1 sha256 sha384 sha512 sha224);
use Encode qw(encode decode);
use MIME::Base64 qw(encode_base64 decode_base64);
use Exporter 'import';

our @EXPORT = qw(ntlm_login);
our @EXPORT_OK = qw(
    type1 parse_type1 make_type2 parse_type2 type3 parse_type3
    b64 unb64 md4 hmac_md5 nt_hash ntowfv2 utf16le from_utf16le
    cb_hash_from_cert_der tls_server_end_point cert_sig_hash
    parse_av build_av av_get filetime_now ntlm_login verify_type3
    user_file_lines
    NTLMSSP_NEGOTIATE_UNICODE NTLMSSP_NEGOTIATE_OEM
    NTLMSSP_REQUEST_TARGET NTLMSSP_NEGOTIATE_SIGN NTLMSSP_NEGOTIATE_SEAL
    NTLMSSP_NEGOTIATE_DATAGRAM NTLMSSP_NEGOTIATE_LM_KEY
    NTLMSSP_NEGOTIATE_NTLM NTLMSSP_ANONYMOUS NTLMSSP_NEGOTIATE_ALWAYS_SIGN
    NTLMSSP_TARGET_TYPE_DOMAIN NTLMSSP_TARGET_TYPE_SERVER
    NTLMSSP_NEGOTIATE_ESS NTLMSSP_NEGOTIATE_TARGET_INFO
    NTLMSSP_NEGOTIATE_VERSION NTLMSSP_NEGOTIATE_128
    NTLMSSP_NEGOTIATE_KEY_EXCH NTLMSSP_NEGOTIATE_56
    DEFAULT_TYPE1_FLAGS
    MsvAvEOL MsvAvNbComputerName MsvAvNbDomainName MsvAvDnsComputerName
    MsvAvDnsDomainName MsvAvDnsTreeName MsvAvFlags MsvAvTimestamp
    MsvAvSingleHost MsvAvTargetName MsvAvChannelBindings
);
our %EXPORT_TAGS = (all => [@EXPORT_OK]);

use constant {
    NTLMSSP_NEGOTIATE_UNICODE     => 0x00000001,
    NTLMSSP_NEGOTIATE_OEM         => 0x00000002,
    NTLMSSP_REQUEST_TARGET        => 0x00000004,
    NTLMSSP_NEGOTIATE_SIGN        => 0x00000010,
    NTLMSSP_NEGOTIATE_SEAL        => 0x00000020,
    NTLMSSP_NEGOTIATE_DATAGRAM    => 0x00000040,
    NTLMSSP_NEGOTIATE_LM_KEY      => 0x00000080,
    NTLMSSP_NEGOTIATE_NTLM        => 0x00000200,
    NTLMSSP_ANONYMOUS             => 0x00000800,
    NTLMSSP_NEGOTIATE_ALWAYS_SIGN => 0x00008000,
    NTLMSSP_TARGET_TYPE_DOMAIN    => 0x00010000,
    NTLMSSP_TARGET_TYPE_SERVER    => 0x00020000,
    NTLMSSP_NEGOTIATE_ESS         => 0x00080000,
    NTLMSSP_NEGOTIATE_TARGET_INFO => 0x00800000,
    NTLMSSP_NEGOTIATE_VERSION     => 0x02000000,
    NTLMSSP_NEGOTIATE_128         => 0x20000000,
    NTLMSSP_NEGOTIATE_KEY_EXCH    => 0x40000000,
    NTLMSSP_NEGOTIATE_56          => 0x80000000,

    MsvAvEOL             => 0,
    MsvAvNbComputerName  => 1,
    MsvAvNbDomainName    => 2,
    MsvAvDnsComputerName => 3,
    MsvAvDnsDomainName   => 4,
    MsvAvDnsTreeName     => 5,
    MsvAvFlags           => 6,
    MsvAvTimestamp       => 7,
    MsvAvSingleHost      => 8,
    MsvAvTargetName      => 9,
    MsvAvChannelBindings => 10,
};

# What a Windows 10 HTTP client asks for, without KEY_EXCH (see the notes:
# the module never negotiates it).
use constant DEFAULT_TYPE1_FLAGS => 0xA2088207;

my $SIG = "NTLMSSP\0";

# Windows 10.0 build 19041, NTLM revision 15.
my $DEFAULT_VERSION = pack('CCvCCCC', 10, 0, 19041, 0, 0, 0, 15);

# ---------------------------------------------------------------- helpers

sub b64 { my ($b) = @_; return encode_base64($b, '') }

sub unb64 {
    my ($s) = @_;
    $s =~ s/\s+//g;
    return decode_base64($s);
}

sub utf16le { my ($s) = @_; return encode('UTF-16LE', defined $s ? $s : '') }
sub from_utf16le { my ($b) = @_; return decode('UTF-16LE', $b) }

sub _hex2bin {
    my ($h) = @_;
    $h =~ s/\s+//g;
    croak "bad hex '$h'" if $h =~ /[^0-9a-fA-F]/ || length($h) % 2;
    return pack('H*', $h);
}

# RFC 1320.  32-bit arithmetic is done in Perl's native integers and
# masked: Perl here is 64-bit.
sub md4 {
    my ($msg) = @_;
    my $bits = length($msg) * 8;
    my ($a, $b, $c, $d) = (0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476);
    my $M = 0xffffffff;

    $msg .= "\x80";
    $msg .= "\0" x ((56 - length($msg) % 64) % 64);
    $msg .= pack('VV', $bits & $M, ($bits >> 32) & $M);

    my $rotl = sub {
        my ($v, $s) = @_;
        $v &= $M;
        return (($v << $s) | ($v >> (32 - $s))) & $M;
    };

    for (my $off = 0; $off < length($msg); $off += 64) {
        my @x = unpack('V16', substr($msg, $off, 64));
        my ($aa, $bb, $cc, $dd) = ($a, $b, $c, $d);

        for my $i (0 .. 15) {
            my $s = (3, 7, 11, 19)[$i % 4];
            my $f = ($b & $c) | ((~$b & $M) & $d);
            ($a, $b, $c, $d) = ($d, $rotl->($a + $f + $x[$i], $s), $b, $c);
        }
        for my $i (0 .. 15) {
            my $k = (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)[$i];
            my $s = (3, 5, 9, 13)[$i % 4];
            my $g = ($b & $c) | ($b & $d) | ($c & $d);
            ($a, $b, $c, $d) =
                ($d, $rotl->($a + $g + $x[$k] + 0x5a827999, $s), $b, $c);
        }
        for my $i (0 .. 15) {
            my $k = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)[$i];
            my $s = (3, 9, 11, 15)[$i % 4];
            my $h = $b ^ $c ^ $d;
            ($a, $b, $c, $d) =
                ($d, $rotl->($a + $h + $x[$k] + 0x6ed9eba1, $s), $b, $c);
        }

        $a = ($a + $aa) & $M;
        $b = ($b + $bb) & $M;
        $c = ($c + $cc) & $M;
        $d = ($d + $dd) & $M;
    }

    return pack('V4', $a, $b, $c, $d);
}

# RFC 2104 with MD5.
sub hmac_md5 {
    my ($key, $data) = @_;
    $key = md5($key) if length($key) > 64;
    $key .= "\0" x (64 - length($key));
    my $ipad = $key ^ ("\x36" x 64);
    my $opad = $key ^ ("\x5c" x 64);
    return md5($opad . md5($ipad . $data));
}

# user_file_lines('KCD', user => password, ...): the lines of a
# kcd_ntlm_user_file ("KCD\user:<NT hash>"), one per user, sorted by name.
sub user_file_lines {
    my ($domain, %pw) = @_;
    my $prefix = length $domain ? "$domain\\" : '';
    return join '', map {
        $prefix . $_ . ':' . unpack('H*', nt_hash($pw{$_})) . "\n"
    } sort keys %pw;
}

sub nt_hash {
    my ($password) = @_;
    return md4(utf16le($password));
}

# MS-NLMP 3.3.2: only the user name is upper-cased.
sub ntowfv2 {
    my ($nthash, $user, $domain) = @_;
    return hmac_md5($nthash, utf16le(uc($user) . (defined $domain ? $domain : '')));
}

# FILETIME: 100 ns units since 1601-01-01 UTC, as 8 little-endian bytes.
sub filetime_now {
    my $t = int((time() + 11644473600) * 10000000);
    return pack('Q<', $t);
}

sub _filetime {
    my ($v) = @_;
    return $v if length($v) == 8 && $v !~ /^\d+$/;
    croak "timestamp must be 8 raw bytes or an integer" if $v !~ /^\d+$/;
    return pack('Q<', $v);
}

# AV pairs: list of [id, raw value]; the EOL is not part of the list.
sub parse_av {
    my ($buf) = @_;
    my @av;
    my $off = 0;
    while (1) {
        croak "AV list truncated" if $off + 4 > length($buf);
        my ($id, $len) = unpack('vv', substr($buf, $off, 4));
        $off += 4;
        last if $id == MsvAvEOL;
        croak "AV pair $id overruns" if $off + $len > length($buf);
        push @av, [$id, substr($buf, $off, $len)];
        $off += $len;
    }
    return \@av;
}

sub build_av {
    my ($av, %o) = @_;
    my $out = '';
    for my $p (@$av) {
        $out .= pack('vv', $p->[0], length($p->[1])) . $p->[1];
    }
    $out .= pack('vv', 0, 0) unless $o{no_eol};
    return $out;
}

sub av_get {
    my ($av, $id) = @_;
    for my $p (@$av) {
        return $p->[1] if $p->[0] == $id;
    }
    return undef;
}

sub _fields {
    my ($buf, $pos) = @_;
    croak "message truncated at field $pos" if $pos + 8 > length($buf);
    my ($len, $max, $off) = unpack('vvV', substr($buf, $pos, 8));
    croak "field at $pos out of bounds ($off+$len > " . length($buf) . ")"
        if $off + $len > length($buf);
    return substr($buf, $off, $len);
}

# ---------------------------------------------------------------- type 1

# type1(flags => N, domain => 'D', workstation => 'W', version => 8 bytes,
#       no_version => 1)
sub type1 {
    my (%o) = @_;
    my $flags = defined $o{flags} ? $o{flags} : DEFAULT_TYPE1_FLAGS;
    my $dom = defined $o{domain} ? $o{domain} : '';
    my $ws = defined $o{workstation} ? $o{workstation} : '';

    # Type 1 strings are always OEM (MS-NLMP 2.2.1.1).
    $flags |= 0x00001000 if length $dom;
    $flags |= 0x00002000 if length $ws;

    my $with_version = !$o{no_version};
    my $hdr = $with_version ? 40 : 32;
    my $off = $hdr;
    my $msg = $SIG . pack('V', 1) . pack('V', $flags);
    $msg .= pack('vvV', length $dom, length $dom, $off);
    $off += length $dom;
    $msg .= pack('vvV', length $ws, length $ws, $off);
    $msg .= defined $o{version} ? $o{version} : $DEFAULT_VERSION
        if $with_version;
    $msg .= $dom . $ws;
    return $msg;
}

sub parse_type1 {
    my ($buf) = @_;
    croak "not NTLMSSP" if length($buf) < 16 || substr($buf, 0, 8) ne $SIG;
    my $type = unpack('V', substr($buf, 8, 4));
    croak "not a Type 1 message (type $type)" if $type != 1;
    my %m = (type => 1, flags => unpack('V', substr($buf, 12, 4)),
             raw => $buf);
    if (length($buf) >= 32) {
        $m{domain} = _fields($buf, 16);
        $m{workstation} = _fields($buf, 24);
    }
    return \%m;
}

# ---------------------------------------------------------------- type 2

# Builds a CHALLENGE message, mostly for testing the client offline.
# make_type2(challenge => 8 bytes, flags => N, target_name => 'str',
#            av => [[id, raw], ...], version => 8 bytes)
sub make_type2 {
    my (%o) = @_;
    my $flags = defined $o{flags} ? $o{flags} : 0xE28A8233;
    my $tn = utf16le(defined $o{target_name} ? $o{target_name} : '');
    my $ti = build_av($o{av} || []);
    my $chal = defined $o{challenge} ? $o{challenge} : "\x01\x23\x45\x67\x89\xab\xcd\xef";
    my $ver = defined $o{version} ? $o{version} : "\x06\x00\x70\x17\x00\x00\x00\x0f";
    my $off = 56;
    my $msg = $SIG . pack('V', 2);
    $msg .= pack('vvV', length $tn, length $tn, $off);
    $msg .= pack('V', $flags) . $chal . ("\0" x 8);
    $msg .= pack('vvV', length $ti, length $ti, $off + length $tn);
    $msg .= $ver . $tn . $ti;
    return $msg;
}

# Returns { type => 2, flags, challenge (8 raw bytes), target_name (decoded
# string), target_name_raw, target_info_raw, av => [[id, raw], ...] (EOL not
# included, order kept), timestamp (8 raw bytes or undef), version, raw }.
# Dies on malformed input.
sub parse_type2 {
    my ($buf) = @_;
    croak "not NTLMSSP" if length($buf) < 32 || substr($buf, 0, 8) ne $SIG;
    my $type = unpack('V', substr($buf, 8, 4));
    croak "not a Type 2 message (type $type)" if $type != 2;
    croak "Type 2 shorter than 48 bytes" if length($buf) < 48;

    my %m = (type => 2, raw => $buf);
    $m{flags} = unpack('V', substr($buf, 20, 4));
    $m{challenge} = substr($buf, 24, 8);
    $m{target_name_raw} = _fields($buf, 12);
    $m{target_name} = ($m{flags} & NTLMSSP_NEGOTIATE_UNICODE)
        ? from_utf16le($m{target_name_raw}) : $m{target_name_raw};
    $m{target_info_raw} = _fields($buf, 40);
    $m{av} = length $m{target_info_raw} ? parse_av($m{target_info_raw}) : [];
    $m{timestamp} = av_get($m{av}, MsvAvTimestamp);
    $m{version} = substr($buf, 48, 8) if length($buf) >= 56;
    return \%m;
}

# ---------------------------------------------------------------- type 3

# type3(%o) builds an AUTHENTICATE message.  In list context returns
# ($bytes, \%info) with the intermediate values (nt_hash, ntowfv2,
# nt_proof, session_base_key, nt_response, lm_response, mic, av, temp).
#
# Required: type2 (raw bytes or parse_type2 result), user, and
# password or nt_hash (32 hex digits or 16 raw bytes).
# See t/README.md for every option.
sub type3 {
    my (%o) = @_;

    my $t2 = $o{type2};
    croak "type3: type2 required" unless defined $t2;
    $t2 = parse_type2($t2) unless ref $t2;
    my $t1 = defined $o{type1} ? $o{type1} : '';
    $t1 = $t1->{raw} if ref $t1;

    my $user = defined $o{user} ? $o{user} : '';
    my $domain = defined $o{domain} ? $o{domain} : '';
    my $ws = defined $o{workstation} ? $o{workstation} : 'WORKSTATION';
    my $anon = $o{anonymous};

    my $nth;
    if (defined $o{nt_hash}) {
        $nth = length($o{nt_hash}) == 16 ? $o{nt_hash} : _hex2bin($o{nt_hash});
    } elsif (defined $o{password}) {
        $nth = nt_hash($o{password});
    } elsif (!$anon) {
        croak "type3: password or nt_hash required";
    }

    my $mic_field = exists $o{mic} ? $o{mic} : 1;
    my $mic_flag = $mic_field && !$o{no_mic_flag};

    my $flags = defined $o{flags} ? $o{flags} : $t2->{flags};
    $flags |= NTLMSSP_ANONYMOUS if $anon && !defined $o{flags};
    my $oem = $o{oem};
    if ($oem && !defined $o{flags}) {
        $flags &= ~NTLMSSP_NEGOTIATE_UNICODE;
        $flags |= NTLMSSP_NEGOTIATE_OEM;
    }
    my $enc = sub { $oem ? $_[0] : utf16le($_[0]) };

    my $schal = $t2->{challenge};
    my $cchal = defined $o{client_challenge} ? $o{client_challenge}
        : pack('C8', map { int rand 256 } 1 .. 8);
    my $ts = defined $o{timestamp} ? _filetime($o{timestamp})
        : defined $t2->{timestamp} ? $t2->{timestamp} : filetime_now();

    # The AV pairs the client echoes: the server's, in order, with Flags
    # updated in place, then the client's own additions (Windows order).
    my @av = map { [@$_] } @{$t2->{av}};
    my %drop = map { $_ => 1 } @{$o{drop_av} || []};

    my $avflags = 0;
    for my $p (@av) {
        $avflags = unpack('V', $p->[1]) if $p->[0] == MsvAvFlags && length($p->[1]) == 4;
    }
    $avflags |= 0x2 if $mic_flag;
    my $have_flags = grep { $_->[0] == MsvAvFlags } @av;
    if ($have_flags) {
        $_->[1] = pack('V', $avflags) for grep { $_->[0] == MsvAvFlags } @av;
    } elsif ($avflags) {
        push @av, [MsvAvFlags, pack('V', $avflags)];
    }

    unless ($o{no_cb}) {
        my $cb = defined $o{cb_hash} ? $o{cb_hash} : "\0" x 16;
        push @av, [MsvAvChannelBindings, $cb];
    }
    push @av, [MsvAvTargetName, utf16le($o{target_name})]
        if defined $o{target_name};
    push @av, @{$o{add_av}} if $o{add_av};

    if ($o{change_av}) {
        for my $id (keys %{$o{change_av}}) {
            my $found = 0;
            for my $p (@av) {
                if ($p->[0] == $id) { $p->[1] = $o{change_av}{$id}; $found = 1 }
            }
            push @av, [$id, $o{change_av}{$id}] unless $found;
        }
    }
    @av = grep { !$drop{$_->[0]} } @av;

    my $avbytes = build_av(\@av, no_eol => $o{no_eol});
    my %info = (av => \@av, client_challenge => $cchal, timestamp => $ts);

    my ($nt, $lm, $key) = ('', '', '');
    if ($anon) {
        $user = '' unless defined $o{user};
        $nt = '';
        $lm = "\0";
        $key = "\0" x 16;
    } else {
        my $ntowf = ntowfv2($nth,
            defined $o{proof_user} ? $o{proof_user} : $user,
            defined $o{proof_domain} ? $o{proof_domain} : $domain);
        my $temp = "\x01\x01" . ("\0" x 6) . $ts . $cchal . ("\0" x 4)
            . $avbytes . ("\0" x 4);
        my $proof = hmac_md5($ntowf, $schal . $temp);
        $key = hmac_md5($ntowf, $proof);

        if ($o{ntlmv1}) {
            # Only the length matters: a server must refuse any NT response
            # of 24 bytes or less (NTLMv1) before looking at it.
            $nt = substr(hmac_md5($ntowf, $schal) . $proof, 0, 24);
        } else {
            $nt = $proof . $temp;
        }

        if (defined $o{lm}) {
            $lm = $o{lm};
        } elsif (defined $t2->{timestamp} && !defined $o{timestamp}) {
            # MS-NLMP 3.1.5.1.2: with MsvAvTimestamp the client sends Z(24)
            $lm = "\0" x 24;
        } else {
            $lm = hmac_md5($ntowf, $schal . $cchal) . $cchal;
        }

        @info{qw(nt_hash ntowfv2 nt_proof session_base_key temp)} =
            ($nth, $ntowf, $proof, $key, $temp);
    }
    $nt = $o{nt_response} if defined $o{nt_response};

    my $dom_b = $enc->($domain);
    my $user_b = $enc->($user);
    my $ws_b = $enc->($ws);
    my $sk = defined $o{session_key} ? $o{session_key} : '';

    my $with_version = !$o{no_version};
    my $hdr = 64 + ($with_version ? 8 : 0) + ($mic_field ? 16 : 0);
    $hdr = 88 if $mic_field && !$with_version;    # MIC stays at offset 72
    my $payload = '';
    my @f;
    for my $d ($lm, $nt, $dom_b, $user_b, $ws_b, $sk) {
        push @f, [length $d, $hdr + length $payload];
        $payload .= $d;
    }

    my $msg = $SIG . pack('V', 3);
    for my $i (0 .. 4) {
        $msg .= pack('vvV', $f[$i][0], $f[$i][0], $f[$i][1]);
    }
    $msg .= pack('vvV', $f[5][0], $f[5][0], $f[5][1]);
    $msg .= pack('V', $flags);
    if ($with_version) {
        $msg .= defined $o{version} ? $o{version} : $DEFAULT_VERSION;
    } elsif ($mic_field) {
        $msg .= "\0" x 8;
    }
    my $mic_off = length $msg;
    $msg .= "\0" x 16 if $mic_field;
    $msg .= $payload;

    if ($mic_field) {
        my $mic = $o{zero_mic} ? "\0" x 16 : hmac_md5($key, $t1 . $t2->{raw} . $msg);
        if ($o{corrupt_mic}) {
            substr($mic, 0, 1) = chr(ord(substr($mic, 0, 1)) ^ 0x01);
        }
        substr($msg, $mic_off, 16) = $mic;
        $info{mic} = $mic;
    }

    $msg = $o{tamper}->($msg) if $o{tamper};

    $info{nt_response} = $nt;
    $info{lm_response} = $lm;
    return wantarray ? ($msg, \%info) : $msg;
}

# Returns { type => 3, flags, lm, nt, domain, user, workstation (decoded),
# session_key, mic (16 bytes when present per MsvAvFlags), av (from the NT
# response, when NTLMv2), raw }.
sub parse_type3 {
    my ($buf) = @_;
    croak "not NTLMSSP" if length($buf) < 64 || substr($buf, 0, 8) ne $SIG;
    my $type = unpack('V', substr($buf, 8, 4));
    croak "not a Type 3 message (type $type)" if $type != 3;
    my %m = (type => 3, raw => $buf);
    $m{flags} = unpack('V', substr($buf, 60, 4));
    $m{lm} = _fields($buf, 12);
    $m{nt} = _fields($buf, 20);
    my $u = $m{flags} & NTLMSSP_NEGOTIATE_UNICODE;
    for ([domain => 28], [user => 36], [workstation => 44]) {
        my $v = _fields($buf, $_->[1]);
        $m{$_->[0]} = $u ? from_utf16le($v) : $v;
    }
    $m{session_key} = _fields($buf, 52);
    if (length($m{nt}) > 24 + 28) {
        $m{nt_proof} = substr($m{nt}, 0, 16);
        $m{timestamp} = substr($m{nt}, 24, 8);
        $m{client_challenge} = substr($m{nt}, 32, 8);
        $m{av} = eval { parse_av(substr($m{nt}, 44)) };
        my $fl = $m{av} ? av_get($m{av}, MsvAvFlags) : undef;
        if (defined $fl && (unpack('V', $fl) & 2) && length($buf) >= 88) {
            $m{mic} = substr($buf, 72, 16);
        }
    }
    return \%m;
}

# verify_type3(type1 => raw, type2 => raw, type3 => raw,
#              nt_hash => hex|16 bytes or password => '...',
#              cb_hash => 16 bytes (expected bindings; undef: not checked),
#              require_cb => 1)
# A reference server-side check (MS-NLMP 3.3.2) used to prove the client,
# and foreign clients, right: returns (1, 'ok', \%info) or (0, reason).
sub verify_type3 {
    my (%o) = @_;
    my $t2 = ref $o{type2} ? $o{type2} : parse_type2($o{type2});
    my $t1 = defined $o{type1} ? $o{type1} : '';
    my $m = eval { parse_type3($o{type3}) } or return (0, "parse: $@");
    my $nth = defined $o{nt_hash}
        ? (length($o{nt_hash}) == 16 ? $o{nt_hash} : _hex2bin($o{nt_hash}))
        : nt_hash($o{password});

    return (0, 'anonymous') if $m->{user} eq '' && length($m->{nt}) == 0;
    return (0, 'ntlmv1') if length($m->{nt}) <= 24;
    return (0, 'no av') unless $m->{av};
    my $temp = substr($m->{nt}, 16);
    return (0, 'bad blob') if substr($temp, 0, 2) ne "\x01\x01";

    my %got;
    $got{$_->[0]} //= $_->[1] for @{$m->{av}};
    for my $p (@{$t2->{av}}) {
        next if $p->[0] == MsvAvFlags;
        return (0, "av $p->[0] not echoed")
            unless defined $got{$p->[0]} && $got{$p->[0]} eq $p->[1];
    }

    my ($ntowf, $proof);
    for my $dom ($m->{domain}, '') {
        $ntowf = ntowfv2($nth, $m->{user}, $dom);
        $proof = hmac_md5($ntowf, $t2->{challenge} . $temp);
        last if $proof eq $m->{nt_proof};
        $proof = undef;
    }
    return (0, 'bad proof') unless defined $proof;
    my $key = hmac_md5($ntowf, $proof);

    my $fl = defined $got{+MsvAvFlags} ? unpack('V', $got{+MsvAvFlags}) : 0;
    if ($fl & 2) {
        return (0, 'short header for MIC') if length($o{type3}) < 88;
        my $z = $o{type3};
        substr($z, 72, 16) = "\0" x 16;
        my $mic = hmac_md5($key, $t1 . $t2->{raw} . $z);
        return (0, 'bad mic') if $mic ne substr($o{type3}, 72, 16);
    } elsif (defined $t2->{timestamp}) {
        return (0, 'no mic');
    }

    if (defined $o{cb_hash}) {
        my $cb = $got{+MsvAvChannelBindings};
        my $zero = "\0" x 16;
        if (!defined $cb || $cb eq $zero) {
            return (0, 'cb missing') if $o{require_cb};
        } elsif ($cb ne $o{cb_hash}) {
            return (0, 'cb mismatch');
        }
    }
    return (1, 'ok', { session_base_key => $key, user => $m->{user},
                       domain => $m->{domain}, av => $m->{av} });
}

# ---------------------------------------------------------------- channel binding

my %SIG_OID = (
    # DER contents of the signatureAlgorithm OIDs => hash name
    "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x04" => 'md5',
    "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x05" => 'sha1',
    "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0e" => 'sha224',
    "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b" => 'sha256',
    "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0c" => 'sha384',
    "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0d" => 'sha512',
    "\x2a\x86\x48\xce\x3d\x04\x01"         => 'sha1',
    "\x2a\x86\x48\xce\x3d\x04\x03\x01"     => 'sha224',
    "\x2a\x86\x48\xce\x3d\x04\x03\x02"     => 'sha256',
    "\x2a\x86\x48\xce\x3d\x04\x03\x03"     => 'sha384',
    "\x2a\x86\x48\xce\x3d\x04\x03\x04"     => 'sha512',
    "\x2b\x0e\x03\x02\x1d"                 => 'sha1',    # sha1WithRSA (OIW)
);

my %HASH_OID = (
    "\x2b\x0e\x03\x02\x1a"                         => 'sha1',
    "\x60\x86\x48\x01\x65\x03\x04\x02\x01"         => 'sha256',
    "\x60\x86\x48\x01\x65\x03\x04\x02\x02"         => 'sha384',
    "\x60\x86\x48\x01\x65\x03\x04\x02\x03"         => 'sha512',
    "\x60\x86\x48\x01\x65\x03\x04\x02\x04"         => 'sha224',
);

my $PSS_OID = "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0a";

# One DER TLV at $off: returns (tag, content offset, content length, end).
sub _tlv {
    my ($buf, $off) = @_;
    croak "DER truncated" if $off + 2 > length($buf);
    my $tag = ord(substr($buf, $off, 1));
    my $l = ord(substr($buf, $off + 1, 1));
    my $p = $off + 2;
    if ($l & 0x80) {
        my $n = $l & 0x7f;
        croak "DER length" if $n < 1 || $n > 4 || $p + $n > length($buf);
        $l = 0;
        $l = ($l << 8) | ord(substr($buf, $p++, 1)) for 1 .. $n;
    }
    croak "DER overrun" if $p + $l > length($buf);
    return ($tag, $p, $l, $p + $l);
}

# The name of the certificate's signature hash ('sha256', ...).
sub cert_sig_hash {
    my ($der) = @_;
    my ($tag, $p, $l) = _tlv($der, 0);               # Certificate
    croak "not a certificate" if $tag != 0x30;
    my (undef, undef, undef, $e) = _tlv($der, $p);   # tbsCertificate
    my ($t2, $ap, $al) = _tlv($der, $e);             # signatureAlgorithm
    croak "no signatureAlgorithm" if $t2 != 0x30;
    my ($ot, $op, $ol, $oe) = _tlv($der, $ap);
    croak "no algorithm OID" if $ot != 0x06;
    my $oid = substr($der, $op, $ol);
    return $SIG_OID{$oid} if $SIG_OID{$oid};
    if ($oid eq $PSS_OID) {
        # RSASSA-PSS-params: [0] hashAlgorithm, default SHA-1
        return 'sha1' if $oe >= $ap + $al;
        my ($pt, $pp) = _tlv($der, $oe);
        return 'sha1' if $pt != 0x30;
        my ($ct, $cp) = _tlv($der, $pp);
        return 'sha1' if $ct != 0xa0;
        my (undef, $hp) = _tlv($der, $cp);           # AlgorithmIdentifier
        my ($ht, $hop, $hol) = _tlv($der, $hp);
        my $h = $HASH_OID{substr($der, $hop, $hol)};
        return $h if $h;
    }
    croak "unsupported certificate signature algorithm OID "
        . unpack('H*', $oid);
}

# RFC 5929 4.1: the certificate hash for tls-server-end-point.
sub tls_server_end_point {
    my ($der) = @_;
    my $h = cert_sig_hash($der);
    $h = 'sha256' if $h eq 'md5' || $h eq 'sha1';
    my %f = (sha224 => \&sha224, sha256 => \&sha256, sha384 => \&sha384,
             sha512 => \&sha512);
    return $f{$h}->($der);
}

# MsvAvChannelBindings value: MD5 of a gss_channel_bindings_struct with
# empty initiator / acceptor addresses and the application data.
sub cb_hash_from_cert_der {
    my ($der) = @_;
    my $app = 'tls-server-end-point:' . tls_server_end_point($der);
    return md5(("\0" x 16) . pack('V', length $app) . $app);
}

# ---------------------------------------------------------------- HTTP

# ntlm_login($conn, $path, %o) performs the handshake on one KcdTest::Conn:
# request with Type 1 -> 401 with Type 2 -> request with Type 3.
# Returns ($resp401, $final) ($final undef when no Type 2 came back; then
# $resp401->{ntlm_error} says why).  $final->{ntlm} holds the type3 info,
# $resp401->{ntlm_type2} the parsed Type 2.
sub ntlm_login {
    my ($conn, $path, %o) = @_;
    my $method = $o{method} || 'GET';
    my $scheme = $o{scheme} || 'NTLM';
    my $cbmode = exists $o{cb} ? $o{cb} : 'auto';
    my @hdrs = @{$o{headers} || []};
    @hdrs = map { ref $_ ? @$_ : $_ } @hdrs
        if @hdrs && ref $hdrs[0];

    my %t1o = %{$o{type1_opts} || {}};
    my $t1 = defined $o{type1_raw} ? $o{type1_raw} : type1(%t1o);

    my $body1 = defined $o{type1_body} ? $o{type1_body}
        : ($method eq 'GET' || $method eq 'HEAD') ? undef : '';
    my $r1 = $conn->request({
        method => $method, path => $path,
        headers => [@hdrs, Authorization => "$scheme " . b64($t1)],
        (defined $body1 ? (body => $body1) : ()),
    });

    my $t2raw;
    for my $v ($r1->headers_all('WWW-Authenticate')) {
        if ($v =~ /^\Q$scheme\E\s+([A-Za-z0-9+\/=]+)\s*$/i) {
            $t2raw = unb64($1);
            last;
        }
    }
    unless (defined $t2raw) {
        $r1->{ntlm_error} = "no '$scheme <Type 2>' challenge (status $r1->{status})";
        return ($r1, undef);
    }
    my $t2 = eval { parse_type2($t2raw) };
    unless ($t2) {
        $r1->{ntlm_error} = "bad Type 2: $@";
        return ($r1, undef);
    }
    $r1->{ntlm_type2} = $t2;

    my %t3o;
    my %skip = map { $_ => 1 } qw(method scheme cb headers body type1_body
        type1_opts type1_raw type3_hook);
    $t3o{$_} = $o{$_} for grep { !$skip{$_} } keys %o;

    if (ref $cbmode eq '' && $cbmode eq 'auto') {
        if ($conn->is_tls) {
            $t3o{cb_hash} = cb_hash_from_cert_der($conn->tls_cert_der);
        }
    } elsif ($cbmode eq 'none') {
        # 16 zero bytes: what Windows sends when it has no bindings
    } elsif ($cbmode eq 'omit') {
        $t3o{no_cb} = 1;
    } else {
        croak "cb must be 'auto', 'none', 'omit' or 16 bytes"
            if length($cbmode) != 16;
        $t3o{cb_hash} = $cbmode;
    }

    my ($t3, $info) = type3(%t3o, type1 => $t1, type2 => $t2);
    $t3 = $o{type3_hook}->($t3) if $o{type3_hook};

    my $r2 = $conn->request({
        method => $method, path => $path,
        headers => [@hdrs, Authorization => "$scheme " . b64($t3)],
        (defined $o{body} ? (body => $o{body})
            : ($method eq 'GET' || $method eq 'HEAD') ? () : (body => '')),
    });
    $r2->{ntlm} = $info;
    $r2->{ntlm}{type3} = $t3;
    return ($r1, $r2);
}

1;
