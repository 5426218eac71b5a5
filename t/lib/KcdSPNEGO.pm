package KcdSPNEGO;

# SPNEGO tokens for the tests (RFC 4178, [MS-SPNG]), written and read by
# Convert::ASN1 (Debian libconvert-asn1-perl): an encoder independent of
# the module's own (OpenSSL templates).  And the NTLM signature of
# mechListMIC (MS-NLMP 3.4.4.2, extended session security, no KEY_EXCH).
#
#   spnego_init(mechs => [names], token => bytes, mic => bytes, init2 => 1)
#   spnego_resp(state => n, mech => name, token => bytes, mic => bytes)
#   parse_spnego(bytes) -> { kind => 'init'|'resp', mechs => [names],
#       mech_types_der, token, state, mech, mic }
#   mech_list_der(names), ntlm_mech_list_mic(session_key, data, dir)
#   spnego_ntlm_login($conn, $path, %o): the whole handshake (see below)

use strict;
use warnings;

use Carp;
use Convert::ASN1;
use Digest::MD5 qw(md5);
use Exporter qw(import);

use KcdNTLM qw(:all);

our @EXPORT_OK = qw(spnego_init spnego_resp parse_spnego mech_list_der
    ntlm_mech_list_mic spnego_ntlm_login %OID);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

our %OID = (
    spnego  => '1.3.6.1.5.5.2',
    krb5    => '1.2.840.113554.1.2.2',
    mskrb5  => '1.2.840.48018.1.2.2',
    ntlmssp => '1.3.6.1.4.1.311.2.2.10',
    negoex  => '1.3.6.1.4.1.311.2.2.30',
    other   => '1.2.3.4.5',
);
my %NAME = reverse %OID;

my $asn = Convert::ASN1->new;
$asn->prepare(<<'ASN') or croak $asn->error;
GSSInit ::= [APPLICATION 0] SEQUENCE {
    thisMech OBJECT IDENTIFIER,
    inner NegotiationToken }
GSSInit2 ::= [APPLICATION 0] SEQUENCE {
    thisMech OBJECT IDENTIFIER,
    inner NegotiationToken2 }
NegotiationToken ::= CHOICE {
    negTokenInit [0] EXPLICIT NegTokenInit,
    negTokenResp [1] EXPLICIT NegTokenResp }
NegotiationToken2 ::= CHOICE {
    negTokenInit2 [0] EXPLICIT NegTokenInit2 }
MechTypeList ::= SEQUENCE OF OBJECT IDENTIFIER
NegTokenInit ::= SEQUENCE {
    mechTypes [0] EXPLICIT MechTypeList,
    reqFlags [1] EXPLICIT BIT STRING OPTIONAL,
    mechToken [2] EXPLICIT OCTET STRING OPTIONAL,
    mechListMIC [3] EXPLICIT OCTET STRING OPTIONAL }
NegHints ::= SEQUENCE {
    hintName [0] EXPLICIT GeneralString OPTIONAL,
    hintAddress [1] EXPLICIT OCTET STRING OPTIONAL }
NegTokenInit2 ::= SEQUENCE {
    mechTypes [0] EXPLICIT MechTypeList OPTIONAL,
    reqFlags [1] EXPLICIT BIT STRING OPTIONAL,
    mechToken [2] EXPLICIT OCTET STRING OPTIONAL,
    negHints [3] EXPLICIT NegHints OPTIONAL,
    mechListMIC [4] EXPLICIT OCTET STRING OPTIONAL }
NegTokenResp ::= SEQUENCE {
    negState [0] EXPLICIT ENUMERATED OPTIONAL,
    supportedMech [1] EXPLICIT OBJECT IDENTIFIER OPTIONAL,
    responseToken [2] EXPLICIT OCTET STRING OPTIONAL,
    mechListMIC [3] EXPLICIT OCTET STRING OPTIONAL }
ASN

sub _find { my $m = $asn->find($_[0]) or croak $asn->error; $m }

sub _oid { my $n = shift; $OID{$n} // $n }

sub mech_list_der {
    my (@names) = @_;
    return _find('MechTypeList')->encode([map { _oid($_) } @names])
        // croak $asn->error;
}

sub spnego_init {
    my (%o) = @_;
    my @mechs = map { _oid($_) } @{$o{mechs} || ['ntlmssp']};
    if ($o{init2}) {
        my %i = (mechTypes => \@mechs,
                 negHints => { hintName =>
                               'not_defined_in_RFC4178@please_ignore' });
        $i{mechToken} = $o{token} if defined $o{token};
        $i{mechListMIC} = $o{mic} if defined $o{mic};
        return _find('GSSInit2')->encode(thisMech => $OID{spnego},
            inner => { negTokenInit2 => \%i }) // croak $asn->error;
    }
    my %i = (mechTypes => \@mechs);
    $i{mechToken} = $o{token} if defined $o{token};
    $i{mechListMIC} = $o{mic} if defined $o{mic};
    return _find('GSSInit')->encode(thisMech => $OID{spnego},
        inner => { negTokenInit => \%i }) // croak $asn->error;
}

sub spnego_resp {
    my (%o) = @_;
    my %r;
    $r{negState} = $o{state} if defined $o{state};
    $r{supportedMech} = _oid($o{mech}) if defined $o{mech};
    $r{responseToken} = $o{token} if defined $o{token};
    $r{mechListMIC} = $o{mic} if defined $o{mic};
    return _find('NegotiationToken')->encode(negTokenResp => \%r)
        // croak $asn->error;
}

sub parse_spnego {
    my ($b) = @_;
    return undef unless defined $b && length $b;
    my $t;
    if (substr($b, 0, 1) eq "\x60") {
        my $g = _find('GSSInit')->decode($b) or return undef;
        $t = $g->{inner};
    } else {
        $t = _find('NegotiationToken')->decode($b) or return undef;
    }
    if (my $r = $t->{negTokenResp}) {
        return { kind => 'resp', state => $r->{negState},
                 mech => defined $r->{supportedMech}
                     ? ($NAME{$r->{supportedMech}} // $r->{supportedMech})
                     : undef,
                 token => $r->{responseToken}, mic => $r->{mechListMIC} };
    }
    my $i = $t->{negTokenInit};
    my @m = map { $NAME{$_} // $_ } @{$i->{mechTypes} || []};
    return { kind => 'init', mechs => \@m, token => $i->{mechToken},
             mic => $i->{mechListMIC},
             mech_types_der => mech_list_der(@{$i->{mechTypes} || []}) };
}

# NTLMSSP_MESSAGE_SIGNATURE with ESS, no KEY_EXCH, sequence number 0 of
# direction 'client' (client-to-server) or 'server'
sub ntlm_mech_list_mic {
    my ($key, $data, $dir) = @_;
    $dir //= 'client';
    my $magic = $dir eq 'client'
        ? "session key to client-to-server signing key magic constant\0"
        : "session key to server-to-client signing key magic constant\0";
    my $sk = md5($key . $magic);
    my $mac = substr(hmac_md5($sk, pack('V', 0) . $data), 0, 8);
    return pack('V', 1) . $mac . pack('V', 0);
}

# NTLM inside SPNEGO, the way Windows does it: negTokenInit with mechs
# (default NTLMSSP, MS-KRB5, KRB5, NegoEx) and the NEGOTIATE as optimistic
# token when NTLMSSP is first, else an empty leg first; Type 3 in a
# negTokenResp with mechListMIC (mic => 0 leaves it out, mic => 'bad'
# corrupts it).  Options of KcdNTLM::type3 pass through.  Returns
# ($r401, $r_final, \%info) with {type2, server_mic, final} in %info.
sub spnego_ntlm_login {
    my ($c, $path, %o) = @_;
    my @mechs = @{$o{mechs} || [qw(ntlmssp mskrb5 krb5 negoex)]};
    my $method = $o{method} || 'GET';
    my @hdrs = @{$o{headers} || []};
    my %t1o = %{$o{type1_opts}
        || { flags => 0xe208b297, domain => 'KCD', workstation => 'WS1' }};
    my $t1 = type1(%t1o);
    my %info;
    my $body1 = ($method eq 'GET' || $method eq 'HEAD') ? undef : '';
    my $req = sub {
        my ($tok, $body) = @_;
        return $c->request({ method => $method, path => $path,
            headers => [@hdrs, Authorization => 'Negotiate ' . b64($tok)],
            (defined $body ? (body => $body) : ()) });
    };
    my $neg_header = sub {
        my ($r) = @_;
        for my $v ($r->headers_all('WWW-Authenticate')) {
            return unb64($1) if $v =~ /^Negotiate\s+([A-Za-z0-9+\/=]+)\s*$/i;
        }
        return undef;
    };

    my $first_ntlm = $mechs[0] eq 'ntlmssp';
    my $init = spnego_init(mechs => \@mechs, init2 => $o{init2},
        token => $first_ntlm ? $t1 : ($o{optimistic} // "\x01\x02\x03"));
    my $r1 = $req->($init, $body1);
    my $p1 = parse_spnego($neg_header->($r1));
    $info{reply1} = $p1;
    return ($r1, undef, \%info) unless $p1;

    if (!defined $p1->{token}) {
        # NTLMSSP selected further down the list: the NEGOTIATE follows
        $r1 = $req->(spnego_resp(token => $t1), $body1);
        $p1 = parse_spnego($neg_header->($r1));
        $info{reply2} = $p1;
        return ($r1, undef, \%info) unless $p1 && defined $p1->{token};
    }

    my $t2 = eval { parse_type2($p1->{token}) } or return ($r1, undef, \%info);
    $info{type2} = $t2;

    my %t3o = map { $_ => $o{$_} } grep {
        !/^(mechs|method|headers|type1_opts|init2|optimistic|mic|body)$/
    } keys %o;
    if ($c->is_tls && !exists $t3o{cb_hash} && !$t3o{no_cb}) {
        $t3o{cb_hash} = cb_hash_from_cert_der($c->tls_cert_der);
    }
    my ($t3, $i3) = type3(%t3o, type1 => $t1, type2 => $t2);
    $info{type3} = $i3;

    my $mic;
    my $mode = exists $o{mic} ? $o{mic} : 1;
    if ($mode) {
        $mic = ntlm_mech_list_mic($i3->{session_base_key} // "\0" x 16,
                                  mech_list_der(@mechs), 'client');
        substr($mic, 5, 1) = chr(ord(substr($mic, 5, 1)) ^ 1)
            if $mode eq 'bad';
    }
    my $r2 = $req->(spnego_resp(token => $t3, mic => $mic),
                    defined $o{body} ? $o{body}
                    : ($method eq 'GET' || $method eq 'HEAD') ? undef : '');
    my $fin = $neg_header->($r2);
    $info{final} = parse_spnego($fin) if defined $fin;
    $info{expected_server_mic} = ntlm_mech_list_mic(
        $i3->{session_base_key} // "\0" x 16, mech_list_der(@mechs), 'server');
    return ($r1, $r2, \%info);
}

1;
