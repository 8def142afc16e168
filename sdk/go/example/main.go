// Command example drives one pull request through its life with the generated Go client:
// open, a refused merge (its google.rpc details decoded), approve, a successful check, merge,
// WatchCommand until SUCCEEDED, and GetPullRequest showing MERGED. Its connection uses the
// standard healthCheckConfig and keepalive pings every 10 s, as production clients do.
//
//	go run . -target 127.0.0.1:50051 -service-config ../../service-config.json
//	go run . -target 127.0.0.1:50051 -second-target 127.0.0.1:50052
//
// With a second gateway, the approve, the merge, its watch and the final read go through it,
// right after the open through the first: the session's interceptors (consistency.go) pass
// each answer's consistency token on, so the second gateway waits until it has read the
// first one's writes instead of answering NOT_FOUND.
//
// It prints one line per step and exits non-zero on the first unexpected answer.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking (healthCheckConfig)
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	prgatev1 "github.com/prgate/prgate/gen/go/prgate/v1"
)

func main() {
	target := flag.String("target", envOr("PRGATE_TARGET", "127.0.0.1:50051"), "gateway host:port")
	second := flag.String("second-target", os.Getenv("PRGATE_SECOND_TARGET"), "another gateway of the same deployment (optional)")
	token := flag.String("token", os.Getenv("PRGATE_TOKEN"), "bearer token (when the gateway requires one)")
	serviceConfig := flag.String("service-config", "", "gRPC service config JSON file (sdk/service-config.json)")
	restart := flag.Bool("restart-pause", false, "after the refused merge, print 'paused' and wait for a line on stdin (a test restarts the gateway meanwhile)")
	flag.Parse()
	config := defaultServiceConfig
	if *serviceConfig != "" {
		published, err := os.ReadFile(*serviceConfig)
		if err != nil {
			log.Fatalf("example failed: %v", err)
		}
		config = string(published)
	}
	if err := run(*target, *second, *token, config, *restart); err != nil {
		log.Fatalf("example failed: %v", err)
	}
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// defaultServiceConfig is used without -service-config: grpc-go's standard client-side health
// checking only (a connection takes calls only while the gateway's grpc.health.v1.Health/Watch
// reports SERVING, so a gateway that is starting or draining gets none). The published
// sdk/service-config.json adds waitForReady (a call waits for a healthy connection until its
// deadline instead of failing at once) and a retry policy for UNAVAILABLE. A retry resends the
// same request message and metadata, so the idempotency key set once per call below is the
// same on every attempt: the gateway maps them to one command.
const defaultServiceConfig = `{"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}`

// dial opens a health-checked connection to target with the session's interceptors and waits
// until it is READY.
func dial(ctx context.Context, target, serviceConfig string, s *session) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(serviceConfig),
		// A ping every 10 s (grpc-go's minimum), also without calls: the gateway allows it.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true,
		}),
		// Read-your-writes across gateways: consistency tokens passed on (consistency.go).
		grpc.WithChainUnaryInterceptor(s.unary),
		grpc.WithChainStreamInterceptor(s.stream),
	)
	if err != nil {
		return nil, err
	}
	conn.Connect()
	for state := conn.GetState(); state != connectivity.Ready; state = conn.GetState() {
		if !conn.WaitForStateChange(ctx, state) {
			conn.Close()
			return nil, fmt.Errorf("no healthy connection to %s (last state %s)", target, state)
		}
	}
	return conn, nil
}

func run(target, secondTarget, token, serviceConfig string, restart bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := newSession() // one per client, shared by its connections
	conn, err := dial(ctx, target, serviceConfig, s)
	if err != nil {
		return err
	}
	defer conn.Close()
	commands := prgatev1.NewPullRequestCommandServiceClient(conn)
	// Approve, merge, watch and get go through the second gateway when there is one.
	later := conn
	if secondTarget != "" {
		if later, err = dial(ctx, secondTarget, serviceConfig, s); err != nil {
			return err
		}
		defer later.Close()
	}
	laterCommands := prgatev1.NewPullRequestCommandServiceClient(later)
	queries := prgatev1.NewPullRequestQueryServiceClient(later)
	fmt.Println("connected: health checked (Health/Watch SERVING)")
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}

	opened, err := commands.OpenPullRequest(ctx, &prgatev1.OpenPullRequestRequest{
		Command: &prgatev1.OpenPullRequest{
			Repository:   "acme/widgets",
			Title:        "Add a widget from Go",
			Author:       "ada",
			SourceBranch: fmt.Sprintf("feature/go-%d", time.Now().UnixNano()),
			TargetBranch: "main",
		},
		// The same key always means the same command: a retry of this call is safe.
		Options: &prgatev1.CommandOptions{IdempotencyKey: fmt.Sprintf("go-example-%d", time.Now().UnixNano())},
	})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	id := opened.GetReceipt().GetPullRequestId()
	fmt.Printf("opened %s state=%s version=%d\n", id, opened.GetReceipt().GetState(), opened.GetReceipt().GetResult().GetVersion())
	if secondTarget != "" {
		fmt.Printf("consistency token kept: %t; next calls through %s\n", s.token(id) != "", secondTarget)
	}

	// Not approved yet: FAILED_PRECONDITION with a google.rpc.PreconditionFailure.
	_, err = commands.MergePullRequest(ctx, &prgatev1.MergePullRequestRequest{
		Command: &prgatev1.MergePullRequest{PullRequestId: id, MergedByUser: "bob"},
		Options: &prgatev1.CommandOptions{ResponseMode: prgatev1.ResponseMode_RESPONSE_MODE_COMPLETED},
	})
	if err := expectRefusal(err); err != nil {
		return err
	}

	if restart {
		fmt.Println("paused")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return fmt.Errorf("pause: %w", err)
		}
	}
	// One idempotency key per call, kept across its attempts: here in the request's options;
	// the "idempotency-key" metadata entry works too (the options' key wins when both are set).
	approve := &prgatev1.ApprovePullRequestRequest{
		Command: &prgatev1.ApprovePullRequest{PullRequestId: id, Reviewer: "bob"},
		Options: &prgatev1.CommandOptions{IdempotencyKey: fmt.Sprintf("go-approve-%d", time.Now().UnixNano())},
	}
	approved, err := laterCommands.ApprovePullRequest(ctx, approve)
	if err != nil {
		return fmt.Errorf("approve: %w", err)
	}
	fmt.Printf("approved state=%s command_id=%s version=%d\n", approved.GetReceipt().GetState(), approved.GetReceipt().GetCommandId(), approved.GetReceipt().GetResult().GetVersion())
	// The same call again with the same key, as an application's own retry would be: the
	// same command, not a second approval.
	again, err := laterCommands.ApprovePullRequest(ctx, approve)
	if err != nil {
		return fmt.Errorf("approve again: %w", err)
	}
	fmt.Printf("approved again command_id=%s\n", again.GetReceipt().GetCommandId())

	checked, err := commands.RecordCheckResult(ctx, &prgatev1.RecordCheckResultRequest{
		Command: &prgatev1.RecordCheckResult{
			PullRequestId: id, CheckName: "ci", Conclusion: prgatev1.CheckConclusion_CHECK_CONCLUSION_SUCCESS,
		},
	})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	fmt.Printf("check ci recorded state=%s\n", checked.GetReceipt().GetState())

	// Merge answers ACCEPTED by default; WatchCommand follows it to its result.
	merge, err := laterCommands.MergePullRequest(ctx, &prgatev1.MergePullRequestRequest{
		Command: &prgatev1.MergePullRequest{PullRequestId: id, MergedByUser: "bob"},
	})
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	commandID := merge.GetReceipt().GetCommandId()
	fmt.Printf("merge %s state=%s\n", commandID, merge.GetReceipt().GetState())

	stream, err := laterCommands.WatchCommand(ctx, &prgatev1.WatchCommandRequest{CommandId: commandID})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	final := prgatev1.CommandState_COMMAND_STATE_UNSPECIFIED
	for {
		item, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		final = item.GetReceipt().GetState()
		fmt.Printf("watch %s\n", final)
	}
	if final != prgatev1.CommandState_COMMAND_STATE_SUCCEEDED {
		return fmt.Errorf("merge ended %s, want SUCCEEDED", final)
	}

	got, err := queries.GetPullRequest(ctx, &prgatev1.GetPullRequestRequest{PullRequestId: id})
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	pr := got.GetPullRequest()
	fmt.Printf("get %s status=%s version=%d merged_by=%s\n", pr.GetPullRequestId(), pr.GetStatus(), pr.GetVersion(), pr.GetMerge().GetMergedByUser())
	if pr.GetStatus() != prgatev1.PullRequestStatus_PULL_REQUEST_STATUS_MERGED {
		return fmt.Errorf("status %s, want MERGED", pr.GetStatus())
	}
	return nil
}

// expectRefusal checks that err is FAILED_PRECONDITION and prints its decoded details.
func expectRefusal(err error) error {
	if err == nil {
		return errors.New("merge before approval succeeded, want FAILED_PRECONDITION")
	}
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition {
		return fmt.Errorf("merge before approval: %v, want FAILED_PRECONDITION", err)
	}
	fmt.Printf("refused code=%s message=%q\n", st.Code(), st.Message())
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.PreconditionFailure:
			for _, v := range d.GetViolations() {
				fmt.Printf("  precondition %s on %s: %s\n", v.GetType(), v.GetSubject(), v.GetDescription())
			}
		case *errdetails.ErrorInfo:
			fmt.Printf("  reason %s command_id=%s\n", d.GetReason(), d.GetMetadata()["command_id"])
		}
	}
	return nil
}
