// Command example drives one pull request through its life with the generated Go client:
// open, a refused merge (its google.rpc details decoded), approve, a successful check, merge,
// WatchCommand until SUCCEEDED, and GetPullRequest showing MERGED.
//
//	go run . -target 127.0.0.1:50051
//
// It prints one line per step and exits non-zero on the first unexpected answer.
package main

import (
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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	prgatev1 "github.com/prgate/prgate/gen/go/prgate/v1"
)

func main() {
	target := flag.String("target", envOr("PRGATE_TARGET", "127.0.0.1:50051"), "gateway host:port")
	token := flag.String("token", os.Getenv("PRGATE_TOKEN"), "bearer token (when the gateway requires one)")
	flag.Parse()
	if err := run(*target, *token); err != nil {
		log.Fatalf("example failed: %v", err)
	}
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func run(target, token string) error {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	commands := prgatev1.NewPullRequestCommandServiceClient(conn)
	queries := prgatev1.NewPullRequestQueryServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
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

	// Not approved yet: FAILED_PRECONDITION with a google.rpc.PreconditionFailure.
	_, err = commands.MergePullRequest(ctx, &prgatev1.MergePullRequestRequest{
		Command: &prgatev1.MergePullRequest{PullRequestId: id, MergedByUser: "bob"},
		Options: &prgatev1.CommandOptions{ResponseMode: prgatev1.ResponseMode_RESPONSE_MODE_COMPLETED},
	})
	if err := expectRefusal(err); err != nil {
		return err
	}

	approved, err := commands.ApprovePullRequest(ctx, &prgatev1.ApprovePullRequestRequest{
		Command: &prgatev1.ApprovePullRequest{PullRequestId: id, Reviewer: "bob"},
	})
	if err != nil {
		return fmt.Errorf("approve: %w", err)
	}
	fmt.Printf("approved state=%s\n", approved.GetReceipt().GetState())

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
	merge, err := commands.MergePullRequest(ctx, &prgatev1.MergePullRequestRequest{
		Command: &prgatev1.MergePullRequest{PullRequestId: id, MergedByUser: "bob"},
	})
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	commandID := merge.GetReceipt().GetCommandId()
	fmt.Printf("merge %s state=%s\n", commandID, merge.GetReceipt().GetState())

	stream, err := commands.WatchCommand(ctx, &prgatev1.WatchCommandRequest{CommandId: commandID})
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
