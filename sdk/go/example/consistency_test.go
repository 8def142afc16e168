package main

// Attacks on the session interceptors, against an in-process gRPC server (bufconn) that
// refuses tokens as a gateway of another deployment, or with a changed secret, does.

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	prgatev1 "github.com/prgate/prgate/gen/go/prgate/v1"
)

// refusingQueries refuses any consistency token except "good", and records what it got.
type refusingQueries struct {
	prgatev1.UnimplementedPullRequestQueryServiceServer
	mu   sync.Mutex
	seen []string
}

func (q *refusingQueries) check(token string) error {
	q.mu.Lock()
	q.seen = append(q.seen, token)
	q.mu.Unlock()
	if token == "" || token == "good" {
		return nil
	}
	if token == "unreached" {
		behind, _ := status.New(codes.Unavailable, "read model behind").WithDetails(
			&errdetails.ErrorInfo{Reason: behindReason, Domain: "prgate.v1"},
		)
		return behind.Err()
	}
	refused, _ := status.New(codes.InvalidArgument, "consistency_token was not issued by this service").WithDetails(
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "consistency_token", Description: "not ours", Reason: refusedTokenReason},
		}},
	)
	return refused.Err()
}

func (q *refusingQueries) GetPullRequest(_ context.Context, r *prgatev1.GetPullRequestRequest) (*prgatev1.GetPullRequestResponse, error) {
	if err := q.check(r.GetConsistencyToken()); err != nil {
		return nil, err
	}
	return &prgatev1.GetPullRequestResponse{
		PullRequest:      &prgatev1.PullRequest{PullRequestId: r.GetPullRequestId(), Version: 3},
		ConsistencyToken: "good",
	}, nil
}

func (q *refusingQueries) WatchPullRequest(r *prgatev1.WatchPullRequestRequest, out grpc.ServerStreamingServer[prgatev1.WatchPullRequestResponse]) error {
	if err := q.check(r.GetConsistencyToken()); err != nil {
		return err
	}
	return out.Send(&prgatev1.WatchPullRequestResponse{
		PullRequest:      &prgatev1.PullRequest{PullRequestId: r.GetPullRequestId(), Version: 3},
		ConsistencyToken: "good",
	})
}

func (q *refusingQueries) tokens() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.seen...)
}

func connect(t *testing.T, s *session) (prgatev1.PullRequestQueryServiceClient, *refusingQueries) {
	t.Helper()
	listener := bufconn.Listen(1 << 20)
	server := grpc.NewServer()
	queries := &refusingQueries{}
	prgatev1.RegisterPullRequestQueryServiceServer(server, queries)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return listener.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(s.unary),
		grpc.WithChainStreamInterceptor(s.stream),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return prgatev1.NewPullRequestQueryServiceClient(conn), queries
}

func TestARefusedTokenIsForgottenAndTheUnaryCallMadeAgainWithoutIt(t *testing.T) {
	s := newSession()
	s.remember("pr-1", 2, "foreign")
	client, queries := connect(t, s)
	got, err := client.GetPullRequest(context.Background(), &prgatev1.GetPullRequestRequest{PullRequestId: "pr-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetPullRequest().GetVersion() != 3 || s.token("pr-1") != "good" {
		t.Fatalf("answer %v, kept token %q", got, s.token("pr-1"))
	}
	if seen := queries.tokens(); len(seen) != 2 || seen[0] != "foreign" || seen[1] != "" {
		t.Fatalf("tokens sent: %q", seen)
	}
}

// A refused token on a watch used to stay in the session: every later watch of that pull
// request was refused again, for ever.
func TestARefusedTokenOnAWatchIsForgottenSoTheNextWatchWorks(t *testing.T) {
	s := newSession()
	s.remember("pr-1", 2, "foreign")
	client, queries := connect(t, s)
	first, err := client.WatchPullRequest(context.Background(), &prgatev1.WatchPullRequestRequest{PullRequestId: "pr-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("first watch: %v, want the gateway's INVALID_ARGUMENT", err)
	}
	if s.token("pr-1") != "" || s.latest != "" {
		t.Fatalf("the refused token is still kept: %q", s.token("pr-1"))
	}
	again, err := client.WatchPullRequest(context.Background(), &prgatev1.WatchPullRequestRequest{PullRequestId: "pr-1"})
	if err != nil {
		t.Fatal(err)
	}
	item, err := again.Recv()
	if err != nil || item.GetPullRequest().GetVersion() != 3 {
		t.Fatalf("second watch: %v, %v", item, err)
	}
	if seen := queries.tokens(); len(seen) != 2 || seen[1] != "" {
		t.Fatalf("tokens sent: %q", seen)
	}
	if s.token("pr-1") != "good" {
		t.Fatalf("the watch's token was not kept: %q", s.token("pr-1"))
	}
}

func TestAnOlderAnswerNeverReplacesANewerToken(t *testing.T) {
	s := newSession()
	s.remember("pr-1", 5, "v5")
	s.remember("pr-1", 4, "v4")
	s.remember("pr-1", 0, "accepted")
	if s.token("pr-1") != "v5" {
		t.Fatalf("kept %q", s.token("pr-1"))
	}
	s.remember("pr-1", 6, "v6")
	if s.token("pr-1") != "v6" || s.latest != "v6" {
		t.Fatalf("kept %q, latest %q", s.token("pr-1"), s.latest)
	}
}

// A token no read model reaches (a cluster recreated under the same topic names) made every
// later call about the pull request wait out its deadline, run after run.
func TestATokenTheReadModelNeverReachedIsForgottenAfterTheCall(t *testing.T) {
	s := newSession()
	s.remember("pr-1", 9, "unreached")
	client, queries := connect(t, s)
	_, err := client.GetPullRequest(context.Background(), &prgatev1.GetPullRequestRequest{PullRequestId: "pr-1"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want the gateway's UNAVAILABLE", err)
	}
	if s.token("pr-1") != "" || s.latest != "" {
		t.Fatalf("the unreached token is still kept: %q", s.token("pr-1"))
	}
	if _, err := client.GetPullRequest(context.Background(), &prgatev1.GetPullRequestRequest{PullRequestId: "pr-1"}); err != nil {
		t.Fatal(err)
	}
	if seen := queries.tokens(); len(seen) != 2 || seen[0] != "unreached" || seen[1] != "" {
		t.Fatalf("tokens sent: %q", seen)
	}
}
